#include "Azure/CredentialFactory.h"

#include "Azure/ClientSecretCredential.h"
#include "Common/Exception.h"

namespace AzureDicom
{
std::unique_ptr<ICredential> CreateCredential(const CredentialSettings& settings,
                                              const TlsSettings& tls)
{
  switch (settings.type)
  {
    case CredentialType::None:
      return nullptr;

    case CredentialType::ClientSecret:
    {
      if (settings.keyVault)
      {
        throw Exception(ErrorCode::BadConfiguration,
                        "AzureDicom.Credentials.KeyVault: reading the client secret from Key "
                        "Vault is not available in this version; set "
                        "AzureDicom.Credentials.ClientSecret (with ${VARIABLE} substitution)");
      }
      const std::string secret = settings.clientSecret;
      return std::make_unique<ClientSecretCredential>(
          settings.authorityHost, settings.tenantId, settings.clientId, settings.scope,
          [secret]() { return secret; }, tls);
    }

    default:
      throw Exception(ErrorCode::BadConfiguration,
                      std::string("AzureDicom.Credentials.Type: \"") + ToString(settings.type) +
                          "\" is not available in this version; expected \"None\" or "
                          "\"ClientSecret\"");
  }
}
}  // namespace AzureDicom
