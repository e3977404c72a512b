#include "Azure/ManagedIdentityCredential.h"

#include "Azure/StowResponse.h"
#include "Azure/TokenRequest.h"
#include "Common/Clock.h"
#include "Common/Exception.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace AzureDicom
{
namespace
{
const char VM_METADATA_HOST[] = "http://169.254.169.254";
const char VM_TOKEN_PATH[] = "/metadata/identity/oauth2/token";
const char VM_API_VERSION[] = "2018-02-01";
const char APP_SERVICE_API_VERSION[] = "2019-08-01";
const char ARC_API_VERSION[] = "2020-06-01";
const char DEFAULT_SCOPE_SUFFIX[] = "/.default";
const char SYSTEM_ASSIGNED[] = "system-assigned";
const char KEY_FILE_EXTENSION[] = ".key";
const char BASIC_SCHEME[] = "basic";
const char REALM_PARAMETER[] = "realm=";
const long HTTP_UNAUTHORIZED = 401;
const unsigned int TOKEN_REQUEST_TIMEOUT_SECONDS = 30;
const size_t MAX_ARC_KEY_BYTES = 4096;  // the limit that Azure's SDK for C++ applies
const size_t MAX_PATH_EXCERPT_BYTES = 300;


std::string GetVariable(const char* name)
{
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}


// Managed identity endpoints take an Azure AD v1 resource, not a v2 scope.
std::string GetResource(const std::string& scope)
{
  const size_t suffixLength = sizeof(DEFAULT_SCOPE_SUFFIX) - 1;
  if (scope.size() > suffixLength &&
      scope.compare(scope.size() - suffixLength, suffixLength, DEFAULT_SCOPE_SUFFIX) == 0)
  {
    return scope.substr(0, scope.size() - suffixLength);
  }

  return scope;
}


bool StartsWithIgnoringCase(const std::string& text, size_t position, const char* prefix)
{
  const size_t length = std::strlen(prefix);
  if (text.size() < position + length)
  {
    return false;
  }

  for (size_t i = 0; i < length; i++)
  {
    const unsigned char c = static_cast<unsigned char>(text[position + i]);
    if (std::tolower(c) != static_cast<unsigned char>(prefix[i]))
    {
      return false;
    }
  }

  return true;
}


bool EndsWith(const std::string& text, const char* suffix)
{
  const size_t length = std::strlen(suffix);
  return text.size() > length && text.compare(text.size() - length, length, suffix) == 0;
}


std::string Quote(const std::string& path)
{
  return "\"" + MakePrintableExcerpt(path, MAX_PATH_EXCERPT_BYTES) + "\"";
}


// Returns the path of a "Basic realm=<path>" challenge, "" when the header is not one. The
// scheme and the parameter name are case-insensitive (RFC 9110), and the value may be quoted.
std::string GetChallengeRealm(const std::string& header)
{
  const size_t schemeStart = header.find_first_not_of(" \t");
  if (schemeStart == std::string::npos ||
      !StartsWithIgnoringCase(header, schemeStart, BASIC_SCHEME))
  {
    return std::string();
  }

  const size_t schemeEnd = schemeStart + std::strlen(BASIC_SCHEME);
  const size_t realmStart = header.find_first_not_of(" \t", schemeEnd);
  if (realmStart == std::string::npos || realmStart == schemeEnd ||
      !StartsWithIgnoringCase(header, realmStart, REALM_PARAMETER))
  {
    return std::string();
  }

  std::string realm = header.substr(realmStart + std::strlen(REALM_PARAMETER));
  while (!realm.empty() && (realm.back() == ' ' || realm.back() == '\t'))
  {
    realm.pop_back();
  }

  if (realm.size() >= 2 && realm.front() == '"' && realm.back() == '"')
  {
    realm = realm.substr(1, realm.size() - 2);
  }

  return realm;
}


// Closes the descriptor when the key has been read or a check has failed.
class FileDescriptor
{
public:
  explicit FileDescriptor(int descriptor) : descriptor_(descriptor) {}

  ~FileDescriptor()
  {
    if (descriptor_ >= 0)
    {
      close(descriptor_);
    }
  }

  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;

  int Get() const
  {
    return descriptor_;
  }

private:
  int descriptor_;
};


// Returns the canonical path (realpath), or "" with errno set.
std::string ResolvePath(const std::string& path)
{
  std::unique_ptr<char, decltype(&std::free)> resolved(realpath(path.c_str(), nullptr), &std::free);
  return resolved ? std::string(resolved.get()) : std::string();
}


std::string GetParentFolder(const std::string& canonicalPath)
{
  const size_t slash = canonicalPath.rfind('/');
  return slash == 0 ? std::string("/") : canonicalPath.substr(0, slash);
}


// Reads at most maxBytes + 1 bytes, so that a file that grew after fstat is still detected.
bool ReadBounded(int descriptor, size_t maxBytes, std::string& content)
{
  std::vector<char> buffer(maxBytes + 1);
  size_t total = 0;
  while (total < buffer.size())
  {
    const ssize_t received = read(descriptor, buffer.data() + total, buffer.size() - total);
    if (received < 0 && errno == EINTR)
    {
      continue;
    }

    if (received < 0)
    {
      return false;
    }

    if (received == 0)
    {
      break;
    }

    total += static_cast<size_t>(received);
  }

  content.assign(buffer.data(), total);
  return true;
}


// A key goes into an HTTP header: a line break in it would add headers to the request.
bool IsHeaderSafe(const std::string& value)
{
  for (const char c : value)
  {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte < ' ' || byte == 0x7f)
    {
      return false;
    }
  }

  return true;
}


std::string TrimTrailingWhitespace(std::string text)
{
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
  {
    text.pop_back();
  }

  return text;
}


std::string RemoveTrailingSlashes(std::string url)
{
  while (!url.empty() && url.back() == '/')
  {
    url.pop_back();
  }

  return url;
}


// Throws Exception(BadConfiguration) naming the variable unless url is empty or an http:// or
// https:// URL with a host.
void CheckEndpointVariable(const std::string& url, const std::string& credentialName,
                           const char* variable)
{
  if (!url.empty())
  {
    GetUrlHost(url, credentialName + ": the environment variable " + variable);
  }
}


std::string AppendQuery(const std::string& url, const std::string& query)
{
  return url + (url.find('?') == std::string::npos ? "?" : "&") + query;
}
}  // namespace


ManagedIdentityEnvironment ReadManagedIdentityEnvironment()
{
  ManagedIdentityEnvironment environment;
  environment.identityEndpoint = GetVariable("IDENTITY_ENDPOINT");
  environment.identityHeader = GetVariable("IDENTITY_HEADER");
  environment.imdsEndpoint = GetVariable("IMDS_ENDPOINT");
  environment.podIdentityAuthorityHost = GetVariable("AZURE_POD_IDENTITY_AUTHORITY_HOST");
  return environment;
}


ManagedIdentityCredential::ManagedIdentityCredential(const std::string& clientId,
                                                     const std::string& scope,
                                                     const ManagedIdentityEnvironment& environment,
                                                     const TlsSettings& tls,
                                                     const std::string& arcTokenFolder)
    : clientId_(clientId),
      resource_(GetResource(scope)),
      identityHeader_(environment.identityHeader),
      arcTokenFolder_(arcTokenFolder),
      tls_(tls)
{
  // Only the Azure Arc agent sets IMDS_ENDPOINT, so it is checked before IDENTITY_HEADER.
  if (!environment.identityEndpoint.empty() && !environment.imdsEndpoint.empty())
  {
    source_ = Source::AzureArc;
    endpoint_ = environment.identityEndpoint;
    CheckEndpointVariable(endpoint_, GetName(), "IDENTITY_ENDPOINT");
  }
  else if (!environment.identityEndpoint.empty() && !environment.identityHeader.empty())
  {
    source_ = Source::AppService;
    endpoint_ = environment.identityEndpoint;
    CheckEndpointVariable(endpoint_, GetName(), "IDENTITY_ENDPOINT");
  }
  else
  {
    source_ = Source::VirtualMachine;
    const std::string& host = environment.podIdentityAuthorityHost;
    CheckEndpointVariable(host, GetName(), "AZURE_POD_IDENTITY_AUTHORITY_HOST");
    endpoint_ = (host.empty() ? std::string(VM_METADATA_HOST) : RemoveTrailingSlashes(host)) +
                VM_TOKEN_PATH;
  }

  if (resource_.empty())
  {
    throw Exception(ErrorCode::BadConfiguration,
                    GetName() +
                        ": AzureDicom.Credentials.Scope is empty; expected the scope of "
                        "the token, such as https://dicom.healthcareapis.azure.com/.default");
  }

  if (source_ == Source::AzureArc && !clientId_.empty())
  {
    throw Exception(ErrorCode::BadConfiguration,
                    GetName() + ": AzureDicom.Credentials.ClientId is \"" + clientId_ +
                        "\", but Azure Arc-enabled servers have only a system-assigned "
                        "identity; expected an empty ClientId");
  }
}


std::string ManagedIdentityCredential::GetPrincipal() const
{
  return clientId_.empty() ? std::string(SYSTEM_ASSIGNED) : clientId_;
}


std::string ManagedIdentityCredential::GetSource() const
{
  switch (source_)
  {
    case Source::AzureArc:
      return "AzureArc";
    case Source::AppService:
      return "AppService";
    default:
      return "VirtualMachine";
  }
}


std::string ManagedIdentityCredential::GetName() const
{
  return GetType() + " credential (" + GetSource() + ")";
}


HttpRequest ManagedIdentityCredential::MakeRequest() const
{
  const char* apiVersion = source_ == Source::AzureArc     ? ARC_API_VERSION
                           : source_ == Source::AppService ? APP_SERVICE_API_VERSION
                                                           : VM_API_VERSION;

  std::string query =
      std::string("api-version=") + apiVersion + "&resource=" + UrlEncode(resource_);
  if (!clientId_.empty())
  {
    query += "&client_id=" + UrlEncode(clientId_);
  }

  HttpRequest request;
  request.method = "GET";
  request.url = AppendQuery(endpoint_, query);
  request.timeoutSeconds = TOKEN_REQUEST_TIMEOUT_SECONDS;
  request.headers = {{"Accept", "application/json"}};
  if (source_ == Source::AppService)
  {
    request.headers.push_back({"X-IDENTITY-HEADER", identityHeader_});
  }
  else
  {
    request.headers.push_back({"Metadata", "true"});
  }

  return request;
}


AccessToken ManagedIdentityCredential::RequestToken()
{
  if (source_ == Source::AzureArc)
  {
    return RequestArcToken();
  }

  const std::vector<std::string> secrets = {identityHeader_};
  return SendTokenRequest(MakeRequest(), secrets, GetType(), GetSource(), tls_);
}


// The Arc agent checks that the caller can read its token folder, which only root and the himds
// group can. It responds with 401 and the path of a fresh key file, and the second request sends
// the content of that file. The path comes from the network, so it is checked before the file is
// read, and the key never appears in a message.
AccessToken ManagedIdentityCredential::RequestArcToken()
{
  const HttpRequest request = MakeRequest();

  HttpResponse challenge;
  try
  {
    HttpClient client(tls_);
    challenge = client.Execute(request);
  }
  catch (const Exception& e)
  {
    if (e.GetCode() == ErrorCode::NetworkError)
    {
      throw Exception(e.GetCode(), GetName() + ": " + e.what());
    }

    throw;
  }

  if (challenge.status != HTTP_UNAUTHORIZED)
  {
    return ParseTokenResponse(challenge, endpoint_, GetType(), NowMs(), GetSource());
  }

  const std::string key = ReadArcKey(challenge);

  HttpRequest authorized = request;
  authorized.headers.push_back({"Authorization", "Basic " + key});
  return SendTokenRequest(authorized, {key}, GetType(), GetSource(), tls_);
}


std::string ManagedIdentityCredential::ReadArcKey(const HttpResponse& challenge) const
{
  const std::string where = GetName() + ": the challenge (HTTP 401) of " + endpoint_;
  const std::string expected = "; expected the Azure Arc agent's \"Basic realm=<key file>\"";
  const std::string header = challenge.GetHeader("www-authenticate");
  if (header.empty())
  {
    throw Exception(ErrorCode::Unauthorized, where + " has no WWW-Authenticate header" + expected);
  }

  const std::string realm = GetChallengeRealm(header);
  if (realm.empty())
  {
    throw Exception(ErrorCode::Unauthorized, where + " has the WWW-Authenticate header " +
                                                 Quote(header) + ", which has no Basic realm" +
                                                 expected);
  }

  const std::string rule = where + " names the key file " + Quote(realm) + ", which ";
  if (realm.front() != '/')
  {
    throw Exception(ErrorCode::Unauthorized, rule + "is not an absolute path");
  }

  const std::string folder = ResolvePath(arcTokenFolder_);
  if (folder.empty())
  {
    throw Exception(ErrorCode::Unauthorized, where + ": the key folder " + Quote(arcTokenFolder_) +
                                                 " cannot be resolved: " + std::strerror(errno));
  }

  const std::string path = ResolvePath(realm);
  if (path.empty())
  {
    throw Exception(
        ErrorCode::Unauthorized,
        rule + (errno == ENOENT ? "does not exist"
                                : "cannot be resolved: " + std::string(std::strerror(errno))));
  }

  // Comparing canonical paths catches "../" and symbolic links that lead out of the folder.
  if (GetParentFolder(path) != folder)
  {
    throw Exception(ErrorCode::Unauthorized, rule + "resolves to " + Quote(path) +
                                                 ", outside the key folder " + Quote(folder));
  }

  if (!EndsWith(path, KEY_FILE_EXTENSION))
  {
    throw Exception(ErrorCode::Unauthorized,
                    rule + "resolves to " + Quote(path) + ", whose name does not end in .key");
  }

  // O_NOFOLLOW and fstat check the file that is read, not one swapped in after realpath, and
  // O_NONBLOCK keeps a FIFO from blocking the open.
  FileDescriptor file(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat status;
  if (file.Get() < 0 || fstat(file.Get(), &status) != 0)
  {
    throw Exception(ErrorCode::Unauthorized,
                    rule + "cannot be opened: " + std::string(std::strerror(errno)));
  }

  if (!S_ISREG(status.st_mode))
  {
    throw Exception(ErrorCode::Unauthorized, rule + "is not a regular file");
  }

  const std::string tooLarge =
      rule + "is larger than " + std::to_string(MAX_ARC_KEY_BYTES) + " bytes";
  if (static_cast<uintmax_t>(status.st_size) > MAX_ARC_KEY_BYTES)
  {
    throw Exception(ErrorCode::Unauthorized, tooLarge);
  }

  std::string key;
  if (!ReadBounded(file.Get(), MAX_ARC_KEY_BYTES, key))
  {
    throw Exception(ErrorCode::Unauthorized,
                    rule + "cannot be read: " + std::string(std::strerror(errno)));
  }

  if (key.size() > MAX_ARC_KEY_BYTES)
  {
    throw Exception(ErrorCode::Unauthorized, tooLarge);
  }

  key = TrimTrailingWhitespace(key);
  if (key.empty())
  {
    throw Exception(ErrorCode::Unauthorized, rule + "is empty");
  }

  if (!IsHeaderSafe(key))
  {
    throw Exception(ErrorCode::Unauthorized,
                    rule + "contains control characters, which cannot be sent in a header");
  }

  return key;
}
}  // namespace AzureDicom
