#include "Azure/ClientSecretCredential.h"

#include "Common/Clock.h"
#include "Common/Exception.h"

#include <json/reader.h>
#include <json/value.h>
#include <json/writer.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

namespace AzureDicom
{
namespace
{
const long HTTP_OK = 200;
const unsigned int TOKEN_REQUEST_TIMEOUT_SECONDS = 30;
const size_t MAX_EXCERPT_CHARS = 300;
const double MS_PER_SECOND = 1000;
const double MAX_SECONDS = 1e11;  // about 3000 years: keeps the conversion to int64 ms defined
const char REDACTED[] = "[REDACTED]";


std::string RemoveTrailingSlashes(std::string url)
{
  while (!url.empty() && url.back() == '/')
  {
    url.pop_back();
  }

  return url;
}


bool ParseJson(const std::string& text, Json::Value& value)
{
  Json::CharReaderBuilder builder;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  std::string errors;
  return reader->parse(text.data(), text.data() + text.size(), &value, &errors);
}


// Keeps printable ASCII and turns every run of other bytes (line breaks, tabs, UTF-8, control
// characters) into one space, so that a remote response cannot forge log lines.
std::string MakePrintable(const std::string& text, size_t maxChars)
{
  std::string excerpt;
  bool pendingSpace = false;

  for (const char c : text)
  {
    const bool printable = c > ' ' && c <= '~';
    if (!printable)
    {
      pendingSpace = !excerpt.empty();
      continue;
    }

    if (pendingSpace)
    {
      excerpt += ' ';
      pendingSpace = false;
    }

    excerpt += c;
    if (excerpt.size() >= maxChars)
    {
      return excerpt + "...";
    }
  }

  return excerpt;
}


std::string MakePrintableExcerpt(const std::string& text)
{
  return MakePrintable(text, MAX_EXCERPT_CHARS);
}


std::string GetStringField(const Json::Value& document, const char* name)
{
  const Json::Value& field = document[name];
  return field.isString() ? field.asString() : std::string();
}


// Reads a number of seconds given as a JSON number or as a string of digits, as managed
// identity endpoints send expires_on. Returns false when the field is absent or not numeric.
bool ReadSeconds(const Json::Value& field, double& seconds)
{
  if (field.isNumeric())
  {
    seconds = field.asDouble();
    return std::fabs(seconds) < MAX_SECONDS;
  }

  if (!field.isString() || field.asString().empty())
  {
    return false;
  }

  const std::string text = field.asString();
  char* end = nullptr;
  errno = 0;
  seconds = std::strtod(text.c_str(), &end);
  return errno == 0 && end == text.c_str() + text.size() && std::fabs(seconds) < MAX_SECONDS;
}


std::string DescribeEntraError(const Json::Value& document)
{
  const std::string error = GetStringField(document, "error");
  std::string description = MakePrintableExcerpt(GetStringField(document, "error_description"));

  // error_description normally starts with "AADSTS<code>:". When it does not, the code is taken
  // from error_codes, because Entra's error documentation is indexed by that code.
  const Json::Value& codes = document["error_codes"];
  if (description.find("AADSTS") == std::string::npos && codes.isArray() && !codes.empty() &&
      codes[0].isIntegral())
  {
    description = "AADSTS" + std::to_string(codes[0].asLargestInt()) +
                  (description.empty() ? "" : ": " + description);
  }

  const std::string traceId = MakePrintableExcerpt(GetStringField(document, "trace_id"));
  if (!traceId.empty() && description.find(traceId) == std::string::npos)
  {
    description += (description.empty() ? "" : " ") + std::string("Trace ID: ") + traceId;
  }

  if (error.empty())
  {
    return description;
  }

  return description.empty() ? MakePrintableExcerpt(error)
                             : MakePrintableExcerpt(error) + ": " + description;
}


[[noreturn]] void ThrowErrorResponse(const HttpResponse& response, const std::string& endpoint,
                                     const std::string& credentialType)
{
  std::string detail;
  Json::Value document;
  if (ParseJson(response.body, document) && document.isObject())
  {
    detail = DescribeEntraError(document);
  }

  if (detail.empty())
  {
    detail = response.body.empty() ? "(empty body)" : MakePrintableExcerpt(response.body);
  }

  throw Exception(ErrorCode::Unauthorized, credentialType + " credential: the token request to " +
                                               endpoint + " failed with HTTP " +
                                               std::to_string(response.status) + ": " + detail);
}


std::string ReplaceAll(std::string text, const std::string& needle, const std::string& by)
{
  if (needle.empty())
  {
    return text;
  }

  for (size_t position = text.find(needle); position != std::string::npos;
       position = text.find(needle, position + by.size()))
  {
    text.replace(position, needle.size(), by);
  }

  return text;
}


// The forms in which a secret can appear in a response or in a message built from it: as sent
// in the form body, escaped in JSON, and after MakePrintable. Longest first, so that a longer
// form is replaced before a shorter form inside it.
std::vector<std::string> ListSecretForms(const std::string& secret)
{
  std::string jsonEscaped = Json::valueToQuotedString(secret.c_str());
  jsonEscaped = jsonEscaped.substr(1, jsonEscaped.size() - 2);

  std::vector<std::string> forms = {secret, UrlEncode(secret), jsonEscaped,
                                    MakePrintable(secret, secret.size() + 1)};
  std::sort(forms.begin(), forms.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return forms;
}


// Entra has echoed parts of a request in error_description. The response body is redacted before
// it is parsed, so that an excerpt cut at MAX_EXCERPT_CHARS cannot keep half a secret, and the
// message again after, because JSON decoding can turn an escaped form back into the secret.
std::string RedactSecret(std::string text, const std::vector<std::string>& secretForms)
{
  for (const std::string& form : secretForms)
  {
    text = ReplaceAll(text, form, REDACTED);
  }

  return text;
}


void RequireSetting(const std::string& value, const char* key, const char* expected)
{
  if (value.empty())
  {
    throw Exception(ErrorCode::BadConfiguration, std::string("ClientSecret credential: ") +
                                                     "Credentials." + key + " is empty; expected " +
                                                     expected);
  }
}
}  // namespace


ClientSecretCredential::ClientSecretCredential(
    const std::string& authorityHost, const std::string& tenantId, const std::string& clientId,
    const std::string& scope, std::function<std::string()> getSecret, const TlsSettings& tls)
    : tokenUrl_(RemoveTrailingSlashes(authorityHost) + "/" + UrlEncode(tenantId) +
                "/oauth2/v2.0/token"),
      clientId_(clientId),
      scope_(scope),
      getSecret_(std::move(getSecret)),
      tls_(tls)
{
  RequireSetting(authorityHost, "AuthorityHost", "the Entra ID authority URL");
  RequireSetting(tenantId, "TenantId", "the directory (tenant) ID");
  RequireSetting(clientId, "ClientId", "the application (client) ID");
  RequireSetting(scope, "Scope", "the scope of the token, such as {resource}/.default");

  if (!getSecret_)
  {
    throw Exception(ErrorCode::InternalError,
                    "ClientSecret credential: getSecret is empty; expected a function that returns "
                    "the client secret");
  }
}


AccessToken ClientSecretCredential::RequestToken()
{
  const std::string secret = getSecret_();
  if (secret.empty())
  {
    throw Exception(ErrorCode::Unauthorized,
                    "ClientSecret credential: the client secret of client ID " + clientId_ +
                        " is empty; expected Credentials.ClientSecret or a Key Vault secret");
  }

  const std::string body = "grant_type=client_credentials&client_id=" + UrlEncode(clientId_) +
                           "&client_secret=" + UrlEncode(secret) + "&scope=" + UrlEncode(scope_);

  HttpRequest request;
  request.method = "POST";
  request.url = tokenUrl_;
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                     {"Accept", "application/json"}};
  request.body = &body;
  request.timeoutSeconds = TOKEN_REQUEST_TIMEOUT_SECONDS;

  const std::vector<std::string> secretForms = ListSecretForms(secret);
  try
  {
    HttpClient client(tls_);
    HttpResponse response = client.Execute(request);
    if (response.status != HTTP_OK)
    {
      response.body = RedactSecret(response.body, secretForms);
    }

    return ParseTokenResponse(response, tokenUrl_, GetType(), NowMs());
  }
  catch (const Exception& e)
  {
    const std::string message = e.GetCode() == ErrorCode::NetworkError
                                    ? GetType() + " credential: " + e.what()
                                    : std::string(e.what());
    throw Exception(e.GetCode(), RedactSecret(message, secretForms));
  }
}


AccessToken ParseTokenResponse(const HttpResponse& response, const std::string& endpoint,
                               const std::string& credentialType, int64_t now)
{
  if (response.status != HTTP_OK)
  {
    ThrowErrorResponse(response, endpoint, credentialType);
  }

  const std::string where = credentialType + " credential: the token response of " + endpoint;

  Json::Value document;
  if (!ParseJson(response.body, document) || !document.isObject())
  {
    throw Exception(ErrorCode::ProtocolError,
                    where + " is not a JSON object: " + MakePrintableExcerpt(response.body));
  }

  AccessToken token;
  token.value = GetStringField(document, "access_token");
  if (token.value.empty())
  {
    throw Exception(ErrorCode::ProtocolError, where + " has no access_token string");
  }

  const std::string tokenType = GetStringField(document, "token_type");
  if (!tokenType.empty() && tokenType != "Bearer" && tokenType != "bearer")
  {
    throw Exception(
        ErrorCode::ProtocolError,
        where + " has token_type \"" + MakePrintableExcerpt(tokenType) + "\"; expected Bearer");
  }

  double seconds = 0;
  if (ReadSeconds(document["expires_in"], seconds))
  {
    token.expiresOn = now + static_cast<int64_t>(seconds * MS_PER_SECOND);
  }
  else if (ReadSeconds(document["expires_on"], seconds))
  {
    token.expiresOn = static_cast<int64_t>(seconds * MS_PER_SECOND);
  }
  else
  {
    throw Exception(ErrorCode::ProtocolError,
                    where +
                        " has no numeric expires_in or expires_on; expected the token's "
                        "lifetime in seconds or its expiry in seconds since the epoch");
  }

  if (token.expiresOn <= now)
  {
    throw Exception(ErrorCode::ProtocolError,
                    where +
                        " has a token that is already expired; expected a positive "
                        "expires_in, or an expires_on in the future (check the system clock)");
  }

  return token;
}
}  // namespace AzureDicom
