#pragma once

#include "Azure/Credential.h"
#include "Sync/Configuration.h"

#include <string>

namespace AzureDicom
{
// Exchanges the service account token that Kubernetes projects into the pod for an Entra ID
// token: the client credentials grant with the file's content as a client_assertion (Microsoft
// Entra Workload ID, federated identity credentials).
class WorkloadIdentityCredential : public ICredential
{
public:
  // Empty arguments are taken from AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE
  // and AZURE_AUTHORITY_HOST (then the default authority host), which the Azure Workload
  // Identity webhook sets. Throws Exception(BadConfiguration) naming what is missing, and for an
  // authority host that is not an https:// URL (http:// only for a loopback host).
  WorkloadIdentityCredential(const std::string& authorityHost, const std::string& tenantId,
                             const std::string& clientId, const std::string& tokenFilePath,
                             const std::string& scope, const TlsSettings& tls);

  // Re-reads the token file on every call, because Kubernetes rotates it. Throws
  // Exception(Unauthorized) naming the path when the file is missing, empty or too large. Error
  // responses of the token endpoint throw what PostTokenRequest throws. No message contains the
  // file's content.
  AccessToken RequestToken() override;

  std::string GetType() const override
  {
    return "WorkloadIdentity";
  }

  // The client ID.
  std::string GetPrincipal() const override
  {
    return clientId_;
  }

  std::string GetTenantId() const
  {
    return tenantId_;
  }

  std::string GetTokenFilePath() const
  {
    return tokenFilePath_;
  }

  std::string GetTokenUrl() const
  {
    return tokenUrl_;
  }

private:
  std::string ReadAssertion() const;

  std::string tenantId_;
  std::string clientId_;
  std::string tokenFilePath_;
  std::string scope_;
  std::string tokenUrl_;
  TlsSettings tls_;
};
}  // namespace AzureDicom
