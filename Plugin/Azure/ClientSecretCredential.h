#pragma once

#include "Azure/Credential.h"
#include "Azure/HttpClient.h"
#include "Azure/TokenRequest.h"

#include <functional>

namespace AzureDicom
{
// The OAuth 2.0 client credentials grant against {AuthorityHost}/{TenantId}/oauth2/v2.0/token.
class ClientSecretCredential : public ICredential
{
public:
  // getSecret returns the client secret each time a token is requested, so that a secret read
  // from Key Vault can change between two requests.
  ClientSecretCredential(const std::string& authorityHost, const std::string& tenantId,
                         const std::string& clientId, const std::string& scope,
                         std::function<std::string()> getSecret, const TlsSettings& tls);

  AccessToken RequestToken() override;

  std::string GetType() const override
  {
    return "ClientSecret";
  }

  std::string GetPrincipal() const override
  {
    return clientId_;
  }

private:
  std::string tokenUrl_;
  std::string clientId_;
  std::string scope_;
  std::function<std::string()> getSecret_;
  TlsSettings tls_;
};
}  // namespace AzureDicom
