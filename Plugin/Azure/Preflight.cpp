#include "Azure/Preflight.h"

#include "Azure/HttpClient.h"
#include "Common/Clock.h"
#include "Common/Exception.h"

#include <cmath>
#include <ctime>

namespace AzureDicom
{
namespace
{
const unsigned int QIDO_TIMEOUT_SECONDS = 30;
const int64_t MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;  // Entra tolerates 5 minutes

Json::Value MakeStep(const std::string& name, const std::string& status,
                     const std::string& details, const std::string& hint = "")
{
  Json::Value step;
  step["Name"] = name;
  step["Status"] = status;
  step["Details"] = details;
  step["Hint"] = hint;
  return step;
}


bool Contains(const std::string& text, const char* part)
{
  return text.find(part) != std::string::npos;
}


// Parses an HTTP date ("Thu, 03 Dec 2026 10:15:30 GMT") as milliseconds, 0 when unreadable.
int64_t ParseHttpDate(const std::string& value)
{
  struct tm parts = {};
  if (strptime(value.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &parts) == nullptr)
  {
    return 0;
  }
  return static_cast<int64_t>(timegm(&parts)) * 1000;
}


std::string GetServiceHint(long status, const std::string& principal)
{
  switch (status)
  {
    case 401:
      return "the service rejected the token: check that Credentials.Scope is the DICOM "
             "service's (https://dicom.healthcareapis.azure.com/.default) and that the tenant "
             "is the service's";
    case 403:
      return "give the principal " + principal + " the \"DICOM Data Owner\" role on the DICOM "
             "service; a new role assignment can take several minutes to apply";
    case 404:
    case 424:
      return "check ServiceUrl (the service's URL, without the version), ApiVersion and "
             "Partition";
    default:
      return status >= 500 ? "the service has trouble: try again later" : "";
  }
}
}  // namespace


std::string GetCredentialHint(const std::string& message)
{
  if (Contains(message, "AADSTS7000215") || Contains(message, "AADSTS7000222"))
  {
    return "the client secret is wrong or has expired: create a new one for the application "
           "(and store it in Key Vault if it is read from there)";
  }
  if (Contains(message, "AADSTS700016"))
  {
    return "no application with this ClientId exists in the tenant: check ClientId and TenantId";
  }
  if (Contains(message, "AADSTS90002") || Contains(message, "AADSTS900023"))
  {
    return "the tenant is not found: check TenantId";
  }
  if (Contains(message, "AADSTS700027") || Contains(message, "AADSTS700024"))
  {
    return "Entra rejected the certificate assertion: upload the certificate to the "
           "application, and check that this machine's clock is right";
  }
  if (Contains(message, "SecretDisabled") || Contains(message, "disabled"))
  {
    return "the secret is disabled in Key Vault: enable it, or pin an enabled version";
  }
  if (Contains(message, "HTTP 403") || Contains(message, "Forbidden"))
  {
    return "give the Key Vault's principal the \"Key Vault Secrets User\" role (or a "
           "\"Get\" access policy on secrets)";
  }
  if (Contains(message, "HTTP 404") || Contains(message, "not found"))
  {
    return "check VaultUrl, SecretName and SecretVersion";
  }
  if (Contains(message, "target host name"))
  {
    return "the server's certificate is for another host name: use a host name that its "
           "certificate lists in the URL";
  }
  if (Contains(message, "169.254.169.254"))
  {
    return "no managed identity endpoint at 169.254.169.254: this machine is not an Azure VM "
           "with a managed identity. On Azure Arc, App Service or Container Apps, check that "
           "their IDENTITY_ENDPOINT variable reaches Orthanc, or use another credential type";
  }
  if (Contains(message, "timed out") || Contains(message, "resolve") ||
      Contains(message, "connect"))
  {
    return "the endpoint cannot be reached: check DNS, the firewall and the proxy";
  }
  if (Contains(message, "certificate"))
  {
    return "TLS verification failed: set Tls.CaCertificates to your proxy's or private CA";
  }
  return "";
}


Json::Value RunPreflight(const Configuration& configuration, CredentialManager& credentials,
                         int64_t now)
{
  Json::Value steps(Json::arrayValue);
  bool passed = true;
  const std::string principal = credentials.GetPrincipal();

  steps.append(MakeStep("Principal", "Info",
                        std::string("credential type ") + ToString(configuration.credentials.type) +
                            (principal.empty() ? "" : ", principal " + principal) +
                            (configuration.credentials.tenantId.empty()
                                 ? ""
                                 : ", tenant " + configuration.credentials.tenantId) +
                            (credentials.GetTokenEndpoint().empty()
                                 ? ""
                                 : ", token endpoint " + credentials.GetTokenEndpoint())));
  steps.append(MakeStep("SecretSource", "Info", credentials.GetSecretSource()));

  std::shared_ptr<SecretProvider> secrets = credentials.GetSecretProvider();
  if (secrets)
  {
    try
    {
      secrets->Refresh(now);
      const SecretStatus status = secrets->GetStatus();
      steps.append(MakeStep("KeyVault", "Passed",
                            "read secret " + status.secretName + " version " +
                                status.versionInUse + " from " + status.vaultUrl));
    }
    catch (const std::exception& e)
    {
      passed = false;
      steps.append(MakeStep("KeyVault", "Failed", e.what(), GetCredentialHint(e.what())));
    }
  }
  else
  {
    steps.append(MakeStep("KeyVault", "Skipped", "the secret is not read from Key Vault"));
  }

  std::string token;
  std::shared_ptr<TokenCache> tokens = credentials.GetTokens();
  if (tokens)
  {
    try
    {
      tokens->Invalidate();
      token = tokens->GetToken(now);
      steps.append(MakeStep("Token", "Passed",
                            "a token was issued, valid until " +
                                FormatIsoTime(tokens->GetExpiresOn())));
    }
    catch (const std::exception& e)
    {
      passed = false;
      steps.append(MakeStep("Token", "Failed", e.what(), GetCredentialHint(e.what())));
    }
  }
  else
  {
    steps.append(MakeStep("Token", "Skipped", "the credential type is None: no token is sent"));
  }

  const std::string url = configuration.GetDicomWebBase() + "/studies?limit=1";
  if (tokens && token.empty())
  {
    steps.append(MakeStep("DicomService", "Skipped", "no token to call " + url + " with"));
  }
  else
  {
    try
    {
      HttpClient http(configuration.tls, 64 * 1024);
      HttpRequest request;
      request.url = url;
      request.timeoutSeconds = QIDO_TIMEOUT_SECONDS;
      request.headers.emplace_back("Accept", "application/dicom+json");
      if (!token.empty())
      {
        request.headers.emplace_back("Authorization", "Bearer " + token);
      }

      const HttpResponse response = http.Execute(request);
      const bool ok = response.status == 200 || response.status == 204;
      std::string details = "GET " + url + " returned HTTP " + std::to_string(response.status) +
                            " in " + std::to_string(static_cast<long>(response.elapsedMs)) +
                            " ms";
      std::string hint = ok ? "" : GetServiceHint(response.status, principal);

      const int64_t serverTime = ParseHttpDate(response.GetHeader("date"));
      if (serverTime != 0 && std::llabs(serverTime - now) > MAX_CLOCK_SKEW_MS)
      {
        details += "; this machine's clock differs from the service's by " +
                   std::to_string(std::llabs(serverTime - now) / 1000) + " s";
        hint += std::string(hint.empty() ? "" : "; ") +
                "set the clock right (NTP): tokens are refused when it is off by minutes";
      }

      passed = passed && ok;
      steps.append(MakeStep("DicomService", ok ? "Passed" : "Failed", details, hint));
    }
    catch (const std::exception& e)
    {
      passed = false;
      steps.append(MakeStep("DicomService", "Failed", e.what(), GetCredentialHint(e.what())));
    }
  }

  Json::Value result;
  result["Passed"] = passed;
  result["Steps"] = steps;
  return result;
}
}  // namespace AzureDicom
