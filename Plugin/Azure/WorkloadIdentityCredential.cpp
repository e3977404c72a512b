#include "Azure/WorkloadIdentityCredential.h"

#include "Azure/HttpClient.h"
#include "Azure/TokenRequest.h"
#include "Common/Exception.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

namespace AzureDicom
{
namespace
{
const char JWT_BEARER_ASSERTION_TYPE[] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// The maximum size of the token file, which stops a path to a device such as /dev/zero from
// exhausting memory. A projected service account token is typically about 1 KB.
const size_t MAX_TOKEN_FILE_BYTES = 1024 * 1024;


// Returns value, or else the environment variable, or else fallback.
std::string ChooseSetting(const std::string& value, const char* variable,
                          const std::string& fallback = std::string())
{
  if (!value.empty())
  {
    return value;
  }

  const char* fromEnvironment = std::getenv(variable);
  if (fromEnvironment != nullptr && fromEnvironment[0] != '\0')
  {
    return fromEnvironment;
  }

  return fallback;
}


void RequireSetting(const std::string& value, const char* setting, const char* origin)
{
  if (value.empty())
  {
    throw Exception(ErrorCode::BadConfiguration, std::string("WorkloadIdentity credential: ") +
                                                     setting + " is missing; expected " + origin);
  }
}


// The client assertion would travel in clear text over plain http:// to another host.
void CheckAuthorityHost(const std::string& authorityHost)
{
  const std::string key = "WorkloadIdentity credential: the authority host";
  const std::string host = GetUrlHost(authorityHost, key);

  const size_t schemeEnd = authorityHost.find("://");
  std::string scheme = authorityHost.substr(0, schemeEnd);
  for (char& c : scheme)
  {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }

  if (scheme == "http" && !IsLoopbackHost(host))
  {
    throw Exception(
        ErrorCode::BadConfiguration,
        key + ": \"" + authorityHost +
            "\" uses plain http:// with a host that is not loopback; expected an "
            "https:// URL (http:// is allowed only for localhost, 127.0.0.0/8 and ::1)");
  }
}


std::string Trim(const std::string& text)
{
  size_t first = 0;
  while (first < text.size() && std::isspace(static_cast<unsigned char>(text[first])))
  {
    first++;
  }

  size_t last = text.size();
  while (last > first && std::isspace(static_cast<unsigned char>(text[last - 1])))
  {
    last--;
  }

  return text.substr(first, last - first);
}
}  // namespace


WorkloadIdentityCredential::WorkloadIdentityCredential(
    const std::string& authorityHost, const std::string& tenantId, const std::string& clientId,
    const std::string& tokenFilePath, const std::string& scope, const TlsSettings& tls)
    : tenantId_(ChooseSetting(tenantId, "AZURE_TENANT_ID")),
      clientId_(ChooseSetting(clientId, "AZURE_CLIENT_ID")),
      tokenFilePath_(ChooseSetting(tokenFilePath, "AZURE_FEDERATED_TOKEN_FILE")),
      scope_(scope),
      tls_(tls)
{
  RequireSetting(tenantId_, "the tenant ID",
                 "AzureDicom.Credentials.TenantId or the environment variable AZURE_TENANT_ID");
  RequireSetting(clientId_, "the client ID",
                 "AzureDicom.Credentials.ClientId or the environment variable AZURE_CLIENT_ID");
  RequireSetting(tokenFilePath_, "the federated token file",
                 "the environment variable AZURE_FEDERATED_TOKEN_FILE, which the Azure Workload "
                 "Identity webhook sets in pods labeled azure.workload.identity/use=true");
  RequireSetting(scope_, "the scope",
                 "AzureDicom.Credentials.Scope, such as "
                 "https://dicom.healthcareapis.azure.com/.default");

  const std::string authority =
      ChooseSetting(authorityHost, "AZURE_AUTHORITY_HOST", CredentialSettings().authorityHost);
  CheckAuthorityHost(authority);
  tokenUrl_ = GetEntraTokenUrl(authority, tenantId_);
}


std::string WorkloadIdentityCredential::ReadAssertion() const
{
  const std::string where = "WorkloadIdentity credential: the federated token file \"" +
                            tokenFilePath_ + "\" (AZURE_FEDERATED_TOKEN_FILE)";

  std::ifstream file(tokenFilePath_, std::ios::binary);
  if (!file)
  {
    throw Exception(ErrorCode::Unauthorized,
                    where + " cannot be opened: " + std::string(std::strerror(errno)) +
                        "; expected the service account token that Kubernetes projects");
  }

  // Reading one byte more than the limit distinguishes a file at the limit from a longer one.
  std::string content(MAX_TOKEN_FILE_BYTES + 1, '\0');
  file.read(&content[0], static_cast<std::streamsize>(content.size()));
  if (file.bad())
  {
    throw Exception(ErrorCode::Unauthorized,
                    where + " cannot be read: " + std::string(std::strerror(errno)));
  }

  content.resize(static_cast<size_t>(file.gcount()));
  if (content.size() > MAX_TOKEN_FILE_BYTES)
  {
    throw Exception(ErrorCode::Unauthorized, where + " is larger than " +
                                                 std::to_string(MAX_TOKEN_FILE_BYTES) +
                                                 " bytes; expected a JSON Web Token");
  }

  const std::string assertion = Trim(content);
  if (assertion.empty())
  {
    throw Exception(ErrorCode::Unauthorized,
                    where +
                        " is empty; expected the service account token that Kubernetes "
                        "projects");
  }

  return assertion;
}


AccessToken WorkloadIdentityCredential::RequestToken()
{
  const std::string assertion = ReadAssertion();

  const std::string body = "grant_type=client_credentials&client_id=" + UrlEncode(clientId_) +
                           "&scope=" + UrlEncode(scope_) +
                           "&client_assertion_type=" + UrlEncode(JWT_BEARER_ASSERTION_TYPE) +
                           "&client_assertion=" + UrlEncode(assertion);

  return PostTokenRequest(tokenUrl_, body, {assertion}, GetType(), tls_);
}
}  // namespace AzureDicom
