#pragma once

#include "Azure/Credential.h"
#include "Azure/KeyVault.h"
#include "Common/Logger.h"
#include "Sync/Configuration.h"

#include <json/value.h>

#include <memory>
#include <string>

namespace AzureDicom
{
// Builds the credential that the configuration describes, with the Key Vault client that
// supplies its secret or certificate, and reports their state for the REST API.
class CredentialManager
{
public:
  // Throws Exception(BadConfiguration) for settings that cannot work in this process (a
  // workload identity without its environment variables, an unreadable certificate file).
  // The logger, if given, receives warnings about a certificate that expires soon.
  CredentialManager(const CredentialSettings& settings, const TlsSettings& tls,
                    ILogger* logger = nullptr);

  // The token cache of the DICOM service's credential, null for the type None.
  std::shared_ptr<TokenCache> GetTokens() const
  {
    return tokens_;
  }

  // The Key Vault secret, null when the secret or certificate is in the configuration.
  std::shared_ptr<SecretProvider> GetSecretProvider() const
  {
    return secrets_;
  }

  std::shared_ptr<TokenCache> GetVaultTokens() const
  {
    return vaultTokens_;
  }

  const CredentialSettings& GetSettings() const
  {
    return settings_;
  }

  // The client ID the plugin acts as, "system-assigned" for such an identity, "" for None.
  std::string GetPrincipal() const;

  // The token endpoint: the Entra authority, or the managed identity endpoint.
  std::string GetTokenEndpoint() const;

  // Where the secret comes from: "configuration", "file <path>", "Key Vault <url>", ...
  std::string GetSecretSource() const;

  // The state for GET /azure-dicom/credentials: never a secret or a token.
  Json::Value GetStatus();

  // Re-reads the Key Vault secret and discards the cached tokens, then requests a new token.
  // Throws what the failing step throws; the status records it.
  void Refresh(int64_t now);

private:
  CredentialSettings settings_;
  std::shared_ptr<TokenCache> vaultTokens_;
  std::shared_ptr<SecretProvider> secrets_;
  std::shared_ptr<TokenCache> tokens_;
  std::string tokenEndpoint_;
  std::string source_;  // the managed identity source, or ""
  std::string tenantId_;
};


// Creates a credential of the settings without Key Vault (also the vault's own credential).
// Returns null for the type None. source and endpoint receive what GetStatus() reports.
std::unique_ptr<ICredential> CreateBaseCredential(const CredentialSettings& settings,
                                                  const TlsSettings& tls, std::string& endpoint,
                                                  std::string& source, ILogger* logger = nullptr);
}  // namespace AzureDicom
