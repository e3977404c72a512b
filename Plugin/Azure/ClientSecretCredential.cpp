#include "Azure/ClientSecretCredential.h"

#include "Common/Exception.h"

#include <utility>

namespace AzureDicom
{
ClientSecretCredential::ClientSecretCredential(
    const std::string& authorityHost, const std::string& tenantId, const std::string& clientId,
    const std::string& scope, std::function<std::string()> getSecret, const TlsSettings& tls)
    : tokenUrl_(GetEntraTokenUrl(authorityHost, tenantId)),
      clientId_(clientId),
      scope_(scope),
      getSecret_(std::move(getSecret)),
      tls_(tls)
{
  RequireCredentialSetting(GetType(), authorityHost, "AuthorityHost", "the Entra ID authority URL");
  RequireCredentialSetting(GetType(), tenantId, "TenantId", "the directory (tenant) ID");
  RequireCredentialSetting(GetType(), clientId, "ClientId", "the application (client) ID");
  RequireCredentialSetting(GetType(), scope, "Scope",
                           "the scope of the token, such as {resource}/.default");

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

  return PostTokenRequest(tokenUrl_, body, {secret}, GetType(), tls_);
}
}  // namespace AzureDicom
