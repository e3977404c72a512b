#include "Azure/KeyVault.h"

#include "Azure/Redaction.h"

#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Common/Json.h"

#include <json/reader.h>
#include <json/value.h>
#include <json/writer.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <utility>
#include <vector>

namespace AzureDicom
{
namespace
{
const char API_VERSION[] = "7.4";
const long HTTP_OK = 200;
const long HTTP_UNAUTHORIZED = 401;
const long HTTP_FORBIDDEN = 403;
const long HTTP_NOT_FOUND = 404;
const long HTTP_TOO_MANY_REQUESTS = 429;
const long HTTP_FIRST_REDIRECT = 300;
const long HTTP_LAST_REDIRECT = 399;
const unsigned int REQUEST_TIMEOUT_SECONDS = 30;

// Key Vault stores secrets of at most 25 KB. The limit leaves room for JSON escaping and the
// attributes, and stops a wrong URL from filling memory with a large page.
const size_t MAX_RESPONSE_BYTES = 1024 * 1024;

const size_t MAX_EXCERPT_CHARS = 300;
const size_t MAX_SECRET_NAME_CHARS = 127;
const int64_t MS_PER_SECOND = 1000;
const double MAX_EXP_SECONDS = 1e11;  // about 3000 years, so that the conversion to ms is defined
const int64_t FAILED_READ_RETRY_MS = 60 * MS_PER_SECOND;
const char SETTINGS_KEY[] = "AzureDicom.Credentials.KeyVault";
const char VAULT_URL_EXAMPLE[] = "https://myvault.vault.azure.net";

// The codes that IsRejectedSecretError matches. Their meanings are in KeyVault.h.
const char* const REJECTED_SECRET_CODES[] = {"AADSTS7000215", "AADSTS7000222", "AADSTS700027",
                                             "AADSTS700024", "AADSTS50012"};


std::string RemoveTrailingSlashes(std::string url)
{
  while (!url.empty() && url.back() == '/')
  {
    url.pop_back();
  }

  return url;
}


std::string ToLowerAscii(std::string text)
{
  for (char& c : text)
  {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }

  return text;
}




std::string MakePrintableExcerpt(const std::string& text)
{
  return MakePrintable(text, MAX_EXCERPT_CHARS);
}


// Returns the member, or null when object is not an object. jsoncpp throws when a member of
// a string or a number is looked up, and a remote body can have any shape.
const Json::Value& GetMember(const Json::Value& object, const char* name)
{
  return object.isObject() ? object[name] : Json::Value::nullSingleton();
}


std::string GetStringField(const Json::Value& object, const char* name)
{
  const Json::Value& field = GetMember(object, name);
  return field.isString() ? field.asString() : std::string();
}


// Replaces every form in which a secret value can reach a message, and every part of it of
// MIN_FRAGMENT_CHARS or more characters.
std::string RedactValue(const std::string& text, const std::string& value)
{
  return RedactSecretsAndFragments(text, ListSecretForms({value}));
}


// Key Vault names contain 1 to 127 letters, digits and '-', and versions letters and digits.
// Checking them here also keeps '/', '?' and '#' out of the request URL.
bool IsValidSecretName(const std::string& name)
{
  if (name.empty() || name.size() > MAX_SECRET_NAME_CHARS)
  {
    return false;
  }

  return std::all_of(name.begin(), name.end(),
                     [](char c)
                     { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-'; });
}


bool IsValidSecretVersion(const std::string& version)
{
  return std::all_of(version.begin(), version.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; });
}


// The vault, secret and credential of a read, for its error messages.
struct ReadContext
{
  std::string where;  // "Key Vault {url}, secret \"{name}\" (newest version)"
  std::string name;
  std::string version;  // "" for the newest
  const ICredential& credential;
};


std::string DescribeSecret(const std::string& vaultUrl, const std::string& name,
                           const std::string& version)
{
  return "Key Vault " + vaultUrl + ", secret \"" + name + "\" (" +
         (version.empty() ? std::string("newest version") : "version " + version) + ")";
}


// The fields of a Key Vault error body: {"error": {"code", "message", "innererror": {"code"}}}.
struct ServiceError
{
  std::string code;
  std::string message;
  std::string innerCode;
  std::string description;  // printable, for the messages, with any echoed value redacted
};


ServiceError ParseServiceError(const HttpResponse& response)
{
  ServiceError error;
  Json::Value document;
  if (!ParseJson(response.body, document) || !document.isObject())
  {
    error.description =
        response.body.empty() ? "(empty body)" : MakePrintableExcerpt(response.body);
    return error;
  }

  const Json::Value& body = GetMember(document, "error");
  error.code = GetStringField(body, "code");
  error.message = GetStringField(body, "message");

  // Key Vault sends "innererror", and logs of the JavaScript SDK show "innerError", so both
  // spellings are read.
  const Json::Value& inner = GetMember(body, "innererror").isNull() ? GetMember(body, "innerError")
                                                                    : GetMember(body, "innererror");
  error.innerCode = GetStringField(inner, "code");

  // An error body should contain no value, but if it does, the value is redacted before the
  // excerpt is cut, so that no half of it is left. It is redacted again after MakePrintable,
  // which can produce a form that the first pass did not match.
  const std::string echoedValue = GetStringField(document, "value");
  const std::string message = RedactValue(error.message, echoedValue);

  std::string description = MakePrintableExcerpt(error.code);
  if (!message.empty())
  {
    description += (description.empty() ? "" : ": ") + MakePrintableExcerpt(message);
  }

  if (!error.innerCode.empty())
  {
    description += " (inner error " + MakePrintableExcerpt(error.innerCode) + ")";
  }

  if (description.empty())
  {
    description = MakePrintableExcerpt(RedactValue(response.body, echoedValue));
  }

  error.description = RedactValue(description, echoedValue);
  return error;
}


// Reads the parameters of the Bearer challenge in WWW-Authenticate, such as
// Bearer authorization="https://login.microsoftonline.com/{tenant}", resource="https://vault...".
// Parsing stops at the next scheme, a token without '='.
std::vector<std::pair<std::string, std::string>> ParseBearerChallenge(const std::string& header)
{
  std::vector<std::pair<std::string, std::string>> parameters;
  const std::string lower = ToLowerAscii(header);
  const size_t scheme = lower.find("bearer ");
  if (scheme == std::string::npos)
  {
    return parameters;
  }

  size_t position = scheme + std::string("bearer ").size();
  while (position < header.size())
  {
    while (position < header.size() && (header[position] == ' ' || header[position] == ','))
    {
      position++;
    }

    const size_t equals = header.find('=', position);
    const size_t space = header.find_first_of(" ,", position);
    if (equals == std::string::npos || (space != std::string::npos && space < equals))
    {
      break;
    }

    const std::string name = ToLowerAscii(header.substr(position, equals - position));
    std::string value;
    position = equals + 1;
    if (position < header.size() && header[position] == '"')
    {
      const size_t close = header.find('"', position + 1);
      const size_t end = close == std::string::npos ? header.size() : close;
      value = header.substr(position + 1, end - position - 1);
      position = end + 1;
    }
    else
    {
      const size_t end = std::min(header.find(',', position), header.size());
      value = header.substr(position, end - position);
      position = end;
    }

    parameters.emplace_back(name, value);
  }

  return parameters;
}


// Describes the authority, tenant and resource that the vault's 401 challenge names, because a
// token from another tenant is the usual cause of a 401 that a new token does not cure.
std::string DescribeChallenge(const std::string& header)
{
  std::string authority;
  std::string resource;
  for (const auto& parameter : ParseBearerChallenge(header))
  {
    if (parameter.first == "authorization" || parameter.first == "authorization_uri")
    {
      authority = MakePrintableExcerpt(parameter.second);
    }
    else if (parameter.first == "resource" || parameter.first == "scope")
    {
      resource = MakePrintableExcerpt(parameter.second);
    }
  }

  std::string description;
  if (!authority.empty())
  {
    const std::string trimmed = RemoveTrailingSlashes(authority);
    const std::string tenant = trimmed.substr(trimmed.find_last_of('/') + 1);
    description =
        " The vault expects a token from the authority " + authority + " (tenant " + tenant + ")";
  }

  if (!resource.empty())
  {
    description += (description.empty() ? " The vault expects a token" : std::string()) +
                   " for the resource " + resource;
  }

  return description.empty() ? description : description + ".";
}


std::string EndSentence(const std::string& text)
{
  return !text.empty() && text.back() == '.' ? text : text + ".";
}


std::string DescribePrincipal(const ICredential& credential)
{
  const std::string principal = credential.GetPrincipal();
  return principal.empty()
             ? "the principal of the " + credential.GetType() + " credential"
             : "the principal " + principal + " of the " + credential.GetType() + " credential";
}


[[noreturn]] void ThrowUnauthorized(const ReadContext& context, const HttpResponse& response)
{
  throw Exception(ErrorCode::Unauthorized,
                  context.where +
                      ": the vault rejected the token twice with HTTP 401, the second time a "
                      "new one: " +
                      EndSentence(ParseServiceError(response).description) +
                      DescribeChallenge(response.GetHeader("www-authenticate")) + " Check that " +
                      SETTINGS_KEY +
                      ".Credentials signs in to the vault's tenant and requests the scope "
                      "https://vault.azure.net/.default");
}


std::string DescribeDisabled(const ReadContext& context)
{
  return context.where + " is disabled. " +
         (context.version.empty()
              ? std::string("Enable its newest version in the vault, or add a new version")
              : std::string("Enable this version in the vault, or set ") + SETTINGS_KEY +
                    ".SecretVersion to an enabled version");
}


[[noreturn]] void ThrowForbidden(const ReadContext& context, const HttpResponse& response)
{
  const ServiceError error = ParseServiceError(response);
  const std::string detail = " (HTTP 403: " + error.description + ").";

  if (error.innerCode == "SecretDisabled" ||
      ToLowerAscii(error.message).find("disabled secret") != std::string::npos)
  {
    throw Exception(ErrorCode::Unauthorized, DescribeDisabled(context) + detail);
  }

  if (error.innerCode == "ForbiddenByFirewall" || error.innerCode == "ForbiddenByConnection")
  {
    throw Exception(ErrorCode::Unauthorized,
                    context.where + ": the vault's network rules rejected this host" + detail +
                        " Allow its address, its virtual network or a private endpoint in the "
                        "vault's networking settings");
  }

  const std::string rbac =
      "If the vault uses Azure role-based access control, assign it the role \"Key Vault "
      "Secrets User\" on the vault or on the secret. A new role assignment can take several "
      "minutes to apply";
  const std::string accessPolicy =
      "If the vault uses access policies, give it the secret permission \"Get\"";

  std::string advice = rbac + ". " + accessPolicy;
  if (error.innerCode == "ForbiddenByRbac")
  {
    advice = rbac;
  }
  else if (error.innerCode == "ForbiddenByPolicy" || error.innerCode == "AccessDenied")
  {
    advice = accessPolicy;
  }

  throw Exception(ErrorCode::Unauthorized, context.where + ": " +
                                               DescribePrincipal(context.credential) +
                                               " may not read the secret" + detail + " " + advice);
}


[[noreturn]] void ThrowNotFound(const ReadContext& context, const HttpResponse& response)
{
  throw Exception(
      ErrorCode::NotFound,
      context.where + " was not found (HTTP 404: " + ParseServiceError(response).description +
          "). Check " + SETTINGS_KEY + ".SecretName and " + SETTINGS_KEY +
          ".SecretVersion, and that " + SETTINGS_KEY + ".VaultUrl is the vault of the secret");
}


[[noreturn]] void ThrowOtherStatus(const ReadContext& context, const HttpResponse& response)
{
  std::string message = context.where + ": the vault returned HTTP " +
                        std::to_string(response.status) + ": " +
                        ParseServiceError(response).description;

  if (response.status == HTTP_TOO_MANY_REQUESTS)
  {
    const std::string retryAfter = MakePrintableExcerpt(response.GetHeader("retry-after"));
    message += ". The vault throttled the request" +
               (retryAfter.empty() ? std::string() : ", retry after " + retryAfter + " s");
  }
  else if (response.status >= HTTP_FIRST_REDIRECT && response.status <= HTTP_LAST_REDIRECT)
  {
    message += ". The vault redirected the request to \"" +
               MakePrintableExcerpt(response.GetHeader("location")) + "\". Check that " +
               SETTINGS_KEY + ".VaultUrl is the URL of the vault, such as " + VAULT_URL_EXAMPLE;
  }

  throw Exception(ErrorCode::NetworkError, message);
}


[[noreturn]] void ThrowErrorResponse(const ReadContext& context, const HttpResponse& response)
{
  switch (response.status)
  {
    case HTTP_UNAUTHORIZED:
      ThrowUnauthorized(context, response);
    case HTTP_FORBIDDEN:
      ThrowForbidden(context, response);
    case HTTP_NOT_FOUND:
      ThrowNotFound(context, response);
    default:
      ThrowOtherStatus(context, response);
  }
}


// Returns the version in an id of the form {vault}/secrets/{name}/{version}, or "" when the id
// has another form. Key Vault compares names without regard to case, so does this.
std::string ParseVersionFromId(const std::string& id, const std::string& name)
{
  const size_t lastSlash = id.find_last_of('/');
  if (lastSlash == std::string::npos)
  {
    return "";
  }

  const std::string version = id.substr(lastSlash + 1);
  const std::string expectedPath = "/secrets/" + ToLowerAscii(name);
  const std::string path = ToLowerAscii(id.substr(0, lastSlash));
  const bool pathMatches =
      path.size() >= expectedPath.size() &&
      path.compare(path.size() - expectedPath.size(), expectedPath.size(), expectedPath) == 0;
  return pathMatches && IsValidSecretVersion(version) ? version : "";
}


// Reads attributes.exp, in seconds since the epoch. Returns false when it is present but not a
// number in range.
bool ReadExpiry(const Json::Value& attributes, int64_t& expiresOn)
{
  expiresOn = 0;
  const Json::Value& exp = GetMember(attributes, "exp");
  if (exp.isNull())
  {
    return true;
  }

  if (!exp.isNumeric() || std::fabs(exp.asDouble()) >= MAX_EXP_SECONDS)
  {
    return false;
  }

  expiresOn = static_cast<int64_t>(exp.asDouble() * MS_PER_SECOND);
  return true;
}


void CheckSecretUsable(const ReadContext& context, const KeyVaultSecret& secret, int64_t now)
{
  if (!secret.enabled)
  {
    throw Exception(ErrorCode::Unauthorized, DescribeDisabled(context));
  }

  if (secret.expiresOn != 0 && secret.expiresOn <= now)
  {
    const std::string remedy =
        context.version.empty()
            ? std::string(
                  "Add a version with a later expiration date in the vault, or remove "
                  "the expiration date")
            : std::string("Set ") + SETTINGS_KEY +
                  ".SecretVersion to a version that has not expired, or remove the expiration "
                  "date in the vault";
    throw Exception(ErrorCode::Unauthorized, context.where + ": version " + secret.version +
                                                 " expired at " + FormatIsoTime(secret.expiresOn) +
                                                 " (its attributes.exp). " + remedy);
  }
}


// Parses a 200 response into the secret. The messages never quote the body, which contains the
// value.
KeyVaultSecret ParseSecretBundle(const ReadContext& context, const HttpResponse& response)
{
  const std::string where = context.where + ": the vault's response";
  if (response.truncated)
  {
    throw Exception(ErrorCode::ProtocolError,
                    where + " is longer than " + std::to_string(MAX_RESPONSE_BYTES) +
                        " bytes; expected a secret of at most 25 KB. Check that " + SETTINGS_KEY +
                        ".VaultUrl is a vault, such as " + VAULT_URL_EXAMPLE);
  }

  Json::Value parsed;
  if (!ParseJson(response.body, parsed) || !parsed.isObject())
  {
    throw Exception(ErrorCode::ProtocolError,
                    where + " (HTTP 200, Content-Type \"" +
                        MakePrintableExcerpt(response.GetHeader("content-type")) + "\", " +
                        std::to_string(response.body.size()) +
                        " bytes) is not a JSON object; expected a secret with value and id. "
                        "Check that " +
                        SETTINGS_KEY + ".VaultUrl is a vault, such as " + VAULT_URL_EXAMPLE);
  }

  const Json::Value& document = parsed;
  KeyVaultSecret secret;
  if (!GetMember(document, "value").isString())
  {
    throw Exception(ErrorCode::ProtocolError, where + " has no string \"value\"");
  }
  secret.value = GetMember(document, "value").asString();
  secret.contentType = GetStringField(document, "contentType");

  const std::string id = GetStringField(document, "id");
  secret.version = ParseVersionFromId(id, context.name);
  if (secret.version.empty())
  {
    throw Exception(ErrorCode::ProtocolError,
                    RedactValue(where + " has the id \"" + MakePrintableExcerpt(id) +
                                    "\"; expected {vault}/secrets/" + context.name + "/{version}",
                                secret.value));
  }

  if (!context.version.empty() && ToLowerAscii(secret.version) != ToLowerAscii(context.version))
  {
    const std::string message = where + " is version " + secret.version +
                                "; expected the pinned version " + context.version;
    throw Exception(ErrorCode::ProtocolError, RedactValue(message, secret.value));
  }

  const Json::Value& attributes = GetMember(document, "attributes");
  const Json::Value& enabled = GetMember(attributes, "enabled");
  secret.enabled = !enabled.isBool() || enabled.asBool();
  if (!ReadExpiry(attributes, secret.expiresOn))
  {
    throw Exception(ErrorCode::ProtocolError,
                    where +
                        " has an attributes.exp that is not a number of seconds since the "
                        "epoch");
  }

  return secret;
}


bool ContainsCode(const std::string& message, const std::string& code)
{
  for (size_t position = message.find(code); position != std::string::npos;
       position = message.find(code, position + 1))
  {
    const size_t end = position + code.size();
    if (end == message.size() || std::isdigit(static_cast<unsigned char>(message[end])) == 0)
    {
      return true;
    }
  }

  return false;
}
}  // namespace


KeyVaultClient::KeyVaultClient(const std::string& vaultUrl, std::shared_ptr<TokenCache> tokens,
                               const TlsSettings& tls)
    : vaultUrl_(RemoveTrailingSlashes(vaultUrl)),
      tokens_(std::move(tokens)),
      http_(tls, MAX_RESPONSE_BYTES)
{
  if (vaultUrl_.empty())
  {
    throw Exception(ErrorCode::BadConfiguration, std::string(SETTINGS_KEY) +
                                                     ".VaultUrl is empty; expected the URL of "
                                                     "the vault, such as " +
                                                     VAULT_URL_EXAMPLE);
  }

  if (!tokens_)
  {
    throw Exception(ErrorCode::InternalError,
                    "KeyVaultClient for " + vaultUrl_ + ": the token cache is null");
  }
}


std::string KeyVaultClient::GetToken(const std::string& where)
{
  try
  {
    return tokens_->GetToken(NowMs());
  }
  catch (const Exception& e)
  {
    throw Exception(e.GetCode(), where + ": failed to get a token for the vault: " + e.what());
  }
}


HttpResponse KeyVaultClient::Send(const std::string& url, const std::string& token,
                                  const std::string& where)
{
  HttpRequest request;
  request.url = url;
  request.headers = {{"Authorization", "Bearer " + token}, {"Accept", "application/json"}};
  request.timeoutSeconds = REQUEST_TIMEOUT_SECONDS;

  try
  {
    std::lock_guard<std::mutex> lock(httpMutex_);
    HttpResponse response = http_.Execute(request);
    RedactToken(response, token);
    return response;
  }
  catch (const Exception& e)
  {
    if (e.GetCode() != ErrorCode::NetworkError)
    {
      throw;
    }

    throw Exception(ErrorCode::NetworkError, where + ": " + e.what());
  }
}


KeyVaultSecret KeyVaultClient::GetSecret(const std::string& name, const std::string& version)
{
  if (!IsValidSecretName(name) || !IsValidSecretVersion(version))
  {
    throw Exception(ErrorCode::BadConfiguration,
                    "Key Vault " + vaultUrl_ + ": the secret name \"" + MakePrintableExcerpt(name) +
                        "\" or version \"" + MakePrintableExcerpt(version) +
                        "\" is invalid; expected a name of 1 to " +
                        std::to_string(MAX_SECRET_NAME_CHARS) +
                        " letters, digits or '-', and a version of letters and digits");
  }

  const ReadContext context{DescribeSecret(vaultUrl_, name, version), name, version,
                            tokens_->GetCredential()};
  const std::string url =
      vaultUrl_ + "/secrets/" + name + "/" + version + "?api-version=" + API_VERSION;

  std::string token = GetToken(context.where);
  HttpResponse response = Send(url, token, context.where);

  // A token can be revoked, or issued before a change of tenant, while it is still within its
  // lifetime. Only that token is invalidated, so that threads of other clients sharing the cache
  // and holding a newer token do not cause one more refresh.
  if (response.status == HTTP_UNAUTHORIZED)
  {
    tokens_->Invalidate(token);
    token = GetToken(context.where);
    response = Send(url, token, context.where);
  }

  if (response.status != HTTP_OK)
  {
    ThrowErrorResponse(context, response);
  }

  const KeyVaultSecret secret = ParseSecretBundle(context, response);
  CheckSecretUsable(context, secret, NowMs());
  return secret;
}


SecretProvider::SecretProvider(std::unique_ptr<KeyVaultClient> client,
                               const std::string& secretName, const std::string& pinnedVersion,
                               unsigned int refreshSeconds)
    : client_(std::move(client)),
      secretName_(secretName),
      pinnedVersion_(pinnedVersion),
      refreshMs_(static_cast<int64_t>(refreshSeconds) * MS_PER_SECOND),
      failedReadRetryMs_(std::min(FAILED_READ_RETRY_MS, refreshMs_))
{
  if (!client_)
  {
    throw Exception(ErrorCode::InternalError,
                    "SecretProvider for secret \"" + secretName + "\": the client is null");
  }

  if (secretName_.empty())
  {
    throw Exception(ErrorCode::BadConfiguration,
                    std::string(SETTINGS_KEY) +
                        ".SecretName is empty; expected the name of the "
                        "secret in " +
                        client_->GetVaultUrl());
  }

  if (refreshSeconds == 0)
  {
    throw Exception(ErrorCode::BadConfiguration,
                    std::string(SETTINGS_KEY) +
                        ".RefreshSeconds is 0; expected the number of seconds between two reads "
                        "of the secret");
  }
}


// Called with stateMutex_ held.
bool SecretProvider::HoldsUsableSecret(int64_t now) const
{
  return hasSecret_ && (secret_.expiresOn == 0 || now < secret_.expiresOn);
}


// Called with stateMutex_ held.
bool SecretProvider::IsReadDue(int64_t now) const
{
  if (!HoldsUsableSecret(now))
  {
    return true;
  }

  if (now < readAt_ + refreshMs_)
  {
    return false;
  }

  // After a failed timed re-read the held secret is still served, and the next read waits a
  // while, so that an unreachable vault does not get a request on every call.
  return !lastFailure_ || now >= lastAttemptAt_ + failedReadRetryMs_;
}


// Called with stateMutex_ held. The message is redacted once more with the value held, because
// an error response of a vault or of a proxy could repeat a value read before.
void SecretProvider::RecordFailure(ErrorCode code, const std::string& message)
{
  const std::string redacted = RedactValue(message, hasSecret_ ? secret_.value : std::string());
  lastError_ = redacted;
  lastFailure_ = std::make_exception_ptr(Exception(code, redacted));
}


// Called with readMutex_ held. Throws the recorded exception on failure.
void SecretProvider::Read(int64_t now)
{
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    readsStarted_++;
    lastAttemptAt_ = now;
  }

  try
  {
    const KeyVaultSecret secret = client_->GetSecret(secretName_, pinnedVersion_);

    std::lock_guard<std::mutex> lock(stateMutex_);
    secret_ = secret;
    hasSecret_ = true;
    readAt_ = now;
    readsCompleted_++;
    lastFailure_ = nullptr;
    lastError_.clear();
  }
  catch (const Exception& e)
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    readsCompleted_++;
    RecordFailure(e.GetCode(), e.what());
    std::rethrow_exception(lastFailure_);
  }
  catch (const std::exception& e)
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    readsCompleted_++;
    RecordFailure(ErrorCode::InternalError,
                  DescribeSecret(client_->GetVaultUrl(), secretName_, pinnedVersion_) +
                      ": the read failed: " + e.what());
    std::rethrow_exception(lastFailure_);
  }
}


KeyVaultSecret SecretProvider::GetSecret(int64_t now)
{
  uint64_t readsBeforeWait;
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    if (!IsReadDue(now))
    {
      return secret_;
    }
    readsBeforeWait = readsCompleted_;
  }

  std::lock_guard<std::mutex> readLock(readMutex_);

  // Another thread may have read while this one waited for readMutex_. Its secret is then used,
  // and its failure is the result of this call too, so that no second request goes to the vault.
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    if (!IsReadDue(now))
    {
      return secret_;
    }

    if (readsCompleted_ != readsBeforeWait && lastFailure_)
    {
      if (HoldsUsableSecret(now))
      {
        return secret_;
      }
      std::rethrow_exception(lastFailure_);
    }
  }

  try
  {
    Read(now);
  }
  catch (const Exception&)
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    if (HoldsUsableSecret(now))
    {
      return secret_;
    }
    throw;
  }

  std::lock_guard<std::mutex> lock(stateMutex_);
  return secret_;
}


bool SecretProvider::Refresh(int64_t now)
{
  std::string versionBefore;
  uint64_t readsBeforeWait;
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    versionBefore = hasSecret_ ? secret_.version : std::string();
    readsBeforeWait = readsStarted_;
  }

  std::lock_guard<std::mutex> readLock(readMutex_);

  // Workers that Entra rejects at the same moment all call Refresh. A read that started after
  // this call began is as recent as this call needs, so one read serves them all. A read that
  // was already running when this call began may predate the rotation, so it does not count.
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    if (readsStarted_ != readsBeforeWait)
    {
      if (lastFailure_)
      {
        std::rethrow_exception(lastFailure_);
      }
      return secret_.version != versionBefore;
    }
  }

  Read(now);

  std::lock_guard<std::mutex> lock(stateMutex_);
  return secret_.version != versionBefore;
}


SecretStatus SecretProvider::GetStatus()
{
  std::lock_guard<std::mutex> lock(stateMutex_);
  SecretStatus status;
  status.vaultUrl = client_->GetVaultUrl();
  status.secretName = secretName_;
  status.pinnedVersion = pinnedVersion_;
  status.versionInUse = hasSecret_ ? secret_.version : std::string();
  status.lastError = lastError_;
  status.readAt = readAt_;
  status.lastAttemptAt = lastAttemptAt_;
  return status;
}


bool IsRejectedSecretError(const std::string& message)
{
  return std::any_of(std::begin(REJECTED_SECRET_CODES), std::end(REJECTED_SECRET_CODES),
                     [&message](const char* code) { return ContainsCode(message, code); });
}
}  // namespace AzureDicom
