#pragma once

#include "Azure/Credential.h"
#include "Azure/HttpClient.h"
#include "Common/Exception.h"
#include "Sync/Configuration.h"

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

namespace AzureDicom
{
// One version of a Key Vault secret, as returned by the Get Secret operation.
struct KeyVaultSecret
{
  std::string value;        // kept in memory only, never logged
  std::string contentType;  // "application/x-pkcs12", "application/x-pem-file", or ""
  std::string version;      // the last segment of the secret's id
  bool enabled = true;
  int64_t expiresOn = 0;  // attributes.exp in milliseconds since the epoch, 0 if none
};


// Reads the secrets of one vault with GET {vaultUrl}/secrets/{name}/{version}?api-version=7.4.
// The bearer token comes from tokens, whose credential must request the scope
// https://vault.azure.net/.default. It is thread-safe and sends one request at a time over one
// kept-alive connection.
class KeyVaultClient
{
public:
  // Throws Exception(BadConfiguration) for an empty vault URL, and InternalError for null tokens.
  KeyVaultClient(const std::string& vaultUrl, std::shared_ptr<TokenCache> tokens,
                 const TlsSettings& tls);

  KeyVaultClient(const KeyVaultClient&) = delete;
  KeyVaultClient& operator=(const KeyVaultClient&) = delete;

  // Reads the given version of the secret, or its newest version when version is "". After a
  // 401, invalidates the token, gets a new one and retries once. Throws Exception with a message
  // that names the vault, the secret and what to change:
  // - Unauthorized: 401 twice (with the authority and tenant of the WWW-Authenticate
  //   challenge), 403 (a missing role or access policy, the vault's firewall), a disabled
  //   secret, a secret whose attributes.exp has passed, or no token for the vault;
  // - NotFound: 404, no such secret or version;
  // - NetworkError: no response, or any other status (429 and 5xx included);
  // - ProtocolError: a 200 whose body is not a secret, or not the pinned version;
  // - BadConfiguration: a name or version that Key Vault cannot contain.
  // No message contains the secret's value, even when the vault's response repeats it.
  KeyVaultSecret GetSecret(const std::string& name, const std::string& version);

  // The vault URL without trailing slashes.
  const std::string& GetVaultUrl() const
  {
    return vaultUrl_;
  }

private:
  std::string GetToken(const std::string& where);
  HttpResponse Send(const std::string& url, const std::string& token, const std::string& where);

  std::string vaultUrl_;
  std::shared_ptr<TokenCache> tokens_;
  std::mutex httpMutex_;  // held during a request, because HttpClient is not thread-safe
  HttpClient http_;
};


// The state of the secret of a SecretProvider, for the status, without the value.
struct SecretStatus
{
  std::string vaultUrl;
  std::string secretName;
  std::string pinnedVersion;  // "" when the newest version is followed
  std::string versionInUse;   // "" until a read succeeded
  std::string lastError;      // message of the last read if it failed, else ""
  int64_t readAt = 0;         // when the secret in use was read, in ms since the epoch
  int64_t lastAttemptAt = 0;  // when the last read started, successful or not
};


// Keeps one secret of a vault in memory, re-reads it every refreshSeconds, and at once on
// Refresh(). A pinned version (non-empty) is the only one ever read, so rotation never replaces
// it. It is thread-safe and runs one read at a time. Threads that arrive during a read use its
// result instead of sending their own request. All times are in ms since the epoch.
class SecretProvider
{
public:
  SecretProvider(std::unique_ptr<KeyVaultClient> client, const std::string& secretName,
                 const std::string& pinnedVersion, unsigned int refreshSeconds);

  // Returns the secret, reading it first when none is held, when the one held is older than
  // refreshSeconds, or when its attributes.exp has passed. When a timed re-read fails, keeps
  // serving the secret held (GetStatus().lastError then contains the failure) and retries after at
  // most a minute. Throws the read's Exception when no usable secret is held.
  KeyVaultSecret GetSecret(int64_t now);

  // Reads the secret now, because Entra rejected the one held as invalid or expired (see
  // IsRejectedSecretError). Returns true when the version in use changed. Throws the read's
  // Exception, after recording it as lastError, and keeps the secret held on failure.
  bool Refresh(int64_t now);

  SecretStatus GetStatus();

private:
  bool HoldsUsableSecret(int64_t now) const;
  bool IsReadDue(int64_t now) const;
  void Read(int64_t now);
  void RecordFailure(ErrorCode code, const std::string& message);

  std::unique_ptr<KeyVaultClient> client_;
  std::string secretName_;
  std::string pinnedVersion_;
  int64_t refreshMs_;
  int64_t failedReadRetryMs_;
  std::mutex readMutex_;   // held during a read, so that only one runs at a time
  std::mutex stateMutex_;  // protects the members below
  bool hasSecret_ = false;
  KeyVaultSecret secret_;
  int64_t readAt_ = 0;
  int64_t lastAttemptAt_ = 0;
  uint64_t readsStarted_ = 0;       // Refresh uses only reads that started after it was called
  uint64_t readsCompleted_ = 0;     // GetSecret uses any read that ended while it waited
  std::exception_ptr lastFailure_;  // the exception of the last read, null if it worked
  std::string lastError_;
};


// Returns true when an error message of Entra ID means that the client secret or the
// certificate was rejected as invalid or expired, so that a newer one should be read from Key
// Vault. These codes match:
// - AADSTS7000215: invalid client secret;
// - AADSTS7000222: expired client secret;
// - AADSTS700027: client assertion signature not valid, as when the certificate is no longer
//   registered on the application;
// - AADSTS700024: client assertion outside its valid time range;
// - AADSTS50012: authentication failed, as for a secret or certificate that is invalid or
//   expired.
// A code followed by another digit is a different code and does not match.
bool IsRejectedSecretError(const std::string& message);
}  // namespace AzureDicom
