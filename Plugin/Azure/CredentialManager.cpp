#include "Azure/CredentialManager.h"

#include "Azure/ClientCertificateCredential.h"
#include "Azure/ClientSecretCredential.h"
#include "Azure/ManagedIdentityCredential.h"
#include "Azure/WorkloadIdentityCredential.h"
#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Sync/OutboxJson.h"

#include <openssl/evp.h>

namespace AzureDicom
{
namespace
{
const char* const DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com";
const char* const PKCS12_CONTENT_TYPE = "application/x-pkcs12";


std::string DecodeBase64(const std::string& text)
{
  std::string clean;
  for (char c : text)
  {
    if (c != '\r' && c != '\n' && c != ' ')
    {
      clean += c;
    }
  }

  std::string decoded(clean.size() / 4 * 3 + 3, '\0');
  const int size = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(&decoded[0]),
                                   reinterpret_cast<const unsigned char*>(clean.data()),
                                   static_cast<int>(clean.size()));
  if (size < 0)
  {
    throw Exception(ErrorCode::Unauthorized,
                    "the certificate read from Key Vault is neither PEM nor base64 PKCS#12");
  }

  // EVP_DecodeBlock counts the padding as data.
  size_t length = static_cast<size_t>(size);
  for (size_t i = clean.size(); i > 0 && clean[i - 1] == '=' && length > 0; i--)
  {
    length--;
  }
  decoded.resize(length);
  return decoded;
}


// Key Vault returns a certificate's private key as a secret: PKCS#12 in base64, or PEM text.
CertificateSource ToCertificateSource(const KeyVaultSecret& secret)
{
  CertificateSource source;
  if (secret.contentType == PKCS12_CONTENT_TYPE ||
      (secret.contentType.empty() && secret.value.find("-----BEGIN") == std::string::npos))
  {
    source.data = DecodeBase64(secret.value);
    source.pkcs12 = true;
  }
  else
  {
    source.data = secret.value;
  }
  return source;
}


// Re-reads the Key Vault secret once when Entra rejects it as invalid or expired, which is what
// a rotation looks like from here, and requests the token again with the new version.
class RotatingCredential : public ICredential
{
public:
  RotatingCredential(std::unique_ptr<ICredential> inner, std::shared_ptr<SecretProvider> secrets) :
      inner_(std::move(inner)), secrets_(std::move(secrets))
  {
  }

  AccessToken RequestToken() override
  {
    try
    {
      return inner_->RequestToken();
    }
    catch (const Exception& e)
    {
      if (!IsRejectedSecretError(e.what()))
      {
        throw;
      }

      if (!secrets_->Refresh(NowMs()))
      {
        throw Exception(e.GetCode(), std::string(e.what()) +
                                         " (Key Vault has no other version of the secret to try)");
      }
      return inner_->RequestToken();
    }
  }

  std::string GetType() const override
  {
    return inner_->GetType();
  }

  std::string GetPrincipal() const override
  {
    return inner_->GetPrincipal();
  }

private:
  std::unique_ptr<ICredential> inner_;
  std::shared_ptr<SecretProvider> secrets_;
};


Json::Value GetTokenStatus(const std::shared_ptr<TokenCache>& tokens)
{
  Json::Value status;
  status["TokenExpiresAt"] = tokens ? ToJsonTime(tokens->GetExpiresOn()) : Json::Value();
  status["LastError"] = tokens ? tokens->GetLastError() : "";
  return status;
}
}  // namespace


std::unique_ptr<ICredential> CreateBaseCredential(const CredentialSettings& settings,
                                                  const TlsSettings& tls, std::string& endpoint,
                                                  std::string& source, ILogger* logger)
{
  const std::string tokenUrl = settings.authorityHost + "/" + settings.tenantId +
                               "/oauth2/v2.0/token";
  source.clear();

  switch (settings.type)
  {
    case CredentialType::None:
      endpoint.clear();
      return nullptr;

    case CredentialType::ClientSecret:
    {
      endpoint = tokenUrl;
      const std::string secret = settings.clientSecret;
      return std::make_unique<ClientSecretCredential>(
          settings.authorityHost, settings.tenantId, settings.clientId, settings.scope,
          [secret]() { return secret; }, tls);
    }

    case CredentialType::ClientCertificate:
    {
      endpoint = tokenUrl;
      const std::string path = settings.certificatePath;
      const std::string password = settings.certificatePassword;
      ReadCertificateFile(path, password);  // refuses an unreadable file at start-up

      // Read again for each token, so that a certificate renewed on disk is picked up.
      return std::make_unique<ClientCertificateCredential>(
          settings.authorityHost, settings.tenantId, settings.clientId, settings.scope,
          [path, password]() { return ReadCertificateFile(path, password); }, tls, logger);
    }

    case CredentialType::ManagedIdentity:
    {
      auto credential = std::make_unique<ManagedIdentityCredential>(
          settings.clientId, settings.scope, ReadManagedIdentityEnvironment(), tls);
      endpoint = credential->GetEndpoint();
      source = credential->GetSource();
      return credential;
    }

    case CredentialType::WorkloadIdentity:
    {
      // AZURE_AUTHORITY_HOST applies unless the configuration names another host.
      const std::string authority =
          settings.authorityHost == DEFAULT_AUTHORITY_HOST ? "" : settings.authorityHost;
      auto credential = std::make_unique<WorkloadIdentityCredential>(
          authority, settings.tenantId, settings.clientId, "", settings.scope, tls);
      endpoint = "token exchange for tenant " + credential->GetTenantId();
      return credential;
    }

    default:
      throw Exception(ErrorCode::BadConfiguration, "AzureDicom.Credentials.Type: unknown type");
  }
}


CredentialManager::CredentialManager(const CredentialSettings& settings, const TlsSettings& tls,
                                     ILogger* logger) :
    settings_(settings), tenantId_(settings.tenantId)
{
  if (!settings.keyVault)
  {
    std::unique_ptr<ICredential> credential =
        CreateBaseCredential(settings, tls, tokenEndpoint_, source_, logger);
    if (credential)
    {
      tokens_ = std::make_shared<TokenCache>(std::move(credential));
    }
    return;
  }

  const KeyVaultSettings& vault = *settings.keyVault;
  std::string vaultEndpoint;
  std::string vaultSource;
  CredentialSettings vaultSettings = *vault.credentials;
  std::unique_ptr<ICredential> vaultCredential =
      CreateBaseCredential(vaultSettings, tls, vaultEndpoint, vaultSource);
  if (vaultCredential)
  {
    vaultTokens_ = std::make_shared<TokenCache>(std::move(vaultCredential));
  }

  secrets_ = std::make_shared<SecretProvider>(
      std::make_unique<KeyVaultClient>(vault.vaultUrl, vaultTokens_, tls), vault.secretName,
      vault.secretVersion, vault.refreshSeconds);

  tokenEndpoint_ = settings.authorityHost + "/" + settings.tenantId + "/oauth2/v2.0/token";
  std::shared_ptr<SecretProvider> secrets = secrets_;
  std::unique_ptr<ICredential> inner;
  if (settings.type == CredentialType::ClientCertificate)
  {
    inner = std::make_unique<ClientCertificateCredential>(
        settings.authorityHost, settings.tenantId, settings.clientId, settings.scope,
        [secrets]() { return ToCertificateSource(secrets->GetSecret(NowMs())); }, tls, logger);
  }
  else
  {
    inner = std::make_unique<ClientSecretCredential>(
        settings.authorityHost, settings.tenantId, settings.clientId, settings.scope,
        [secrets]() { return secrets->GetSecret(NowMs()).value; }, tls);
  }

  tokens_ = std::make_shared<TokenCache>(
      std::make_unique<RotatingCredential>(std::move(inner), secrets_));
}


std::string CredentialManager::GetPrincipal() const
{
  return tokens_ ? tokens_->GetCredential().GetPrincipal() : "";
}


std::string CredentialManager::GetTokenEndpoint() const
{
  return tokenEndpoint_;
}


std::string CredentialManager::GetSecretSource() const
{
  if (settings_.keyVault)
  {
    return "Key Vault " + settings_.keyVault->vaultUrl + ", secret " +
           settings_.keyVault->secretName +
           (settings_.keyVault->secretVersion.empty()
                ? " (newest version)"
                : " (version " + settings_.keyVault->secretVersion + ")");
  }

  switch (settings_.type)
  {
    case CredentialType::ClientSecret:
      return "the configuration (AzureDicom.Credentials.ClientSecret)";
    case CredentialType::ClientCertificate:
      return "the file " + settings_.certificatePath;
    case CredentialType::ManagedIdentity:
      return "the managed identity endpoint (" + source_ + ")";
    case CredentialType::WorkloadIdentity:
      return "the federated token file (AZURE_FEDERATED_TOKEN_FILE)";
    default:
      return "none";
  }
}


Json::Value CredentialManager::GetStatus()
{
  Json::Value status = GetTokenStatus(tokens_);
  status["Type"] = ToString(settings_.type);
  status["TenantId"] = tenantId_;
  status["Principal"] = GetPrincipal();
  status["Source"] = source_;
  status["TokenEndpoint"] = tokenEndpoint_;
  status["SecretSource"] = GetSecretSource();

  if (!secrets_)
  {
    status["KeyVault"] = Json::nullValue;
    return status;
  }

  const SecretStatus secret = secrets_->GetStatus();
  Json::Value& vault = status["KeyVault"];
  vault["VaultUrl"] = secret.vaultUrl;
  vault["SecretName"] = secret.secretName;
  vault["PinnedVersion"] = secret.pinnedVersion;
  vault["VersionInUse"] = secret.versionInUse;
  vault["ReadAt"] = ToJsonTime(secret.readAt);
  vault["LastAttemptAt"] = ToJsonTime(secret.lastAttemptAt);
  vault["RefreshSeconds"] = settings_.keyVault->refreshSeconds;
  vault["LastError"] = secret.lastError;

  Json::Value credentials = GetTokenStatus(vaultTokens_);
  credentials["Type"] = ToString(settings_.keyVault->credentials->type);
  credentials["Principal"] = vaultTokens_ ? vaultTokens_->GetCredential().GetPrincipal() : "";
  vault["Credentials"] = credentials;
  return status;
}


void CredentialManager::Refresh(int64_t now)
{
  if (vaultTokens_)
  {
    vaultTokens_->Invalidate();
  }

  if (secrets_)
  {
    secrets_->Refresh(now);
  }

  if (tokens_)
  {
    tokens_->Invalidate();
    tokens_->GetToken(now);
  }
}
}  // namespace AzureDicom
