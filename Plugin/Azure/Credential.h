#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

namespace AzureDicom
{
struct AccessToken
{
  std::string value;
  int64_t expiresOn = 0;  // milliseconds since the Unix epoch
};


// Obtains access tokens from Microsoft Entra ID or a managed identity endpoint. Implementations
// throw Exception(Unauthorized) with the credential's type, the endpoint, and what Entra
// returned (error, error_description, AADSTS code), never with a secret in the message.
class ICredential
{
public:
  virtual ~ICredential() = default;

  virtual AccessToken RequestToken() = 0;

  // "ClientSecret", "ManagedIdentity", ...
  virtual std::string GetType() const = 0;

  // The principal the token is for (client ID), or "" when unknown.
  virtual std::string GetPrincipal() const = 0;
};


// Caches the token of a credential and refreshes it ahead of its expiry. Only one thread
// refreshes at a time: the others wait for its result instead of sending their own request, and
// when that refresh fails they all receive its exception.
class TokenCache
{
public:
  // A token is refreshed once less than marginSeconds of its life remain. A token that lives
  // less than twice the margin is refreshed at half its lifetime instead.
  TokenCache(std::unique_ptr<ICredential> credential, unsigned int marginSeconds = 300);

  // Returns a valid token, refreshing it first if needed. now is in milliseconds since the
  // epoch. Throws what the credential throws, and Exception(Unauthorized) when the credential
  // returns an empty or already expired token.
  std::string GetToken(int64_t now);

  // Forgets the cached token (after a 401 of the service), so that the next call refreshes.
  void Invalidate();

  // Forgets the cached token only while it is still rejectedToken. Several workers that get a
  // 401 for the same token then cause one refresh, not one each.
  void Invalidate(const std::string& rejectedToken);

  // For the status: expiry of the cached token (0 if none), the last error ("" if the last
  // refresh worked).
  int64_t GetExpiresOn();
  std::string GetLastError();

  const ICredential& GetCredential() const
  {
    return *credential_;
  }

private:
  bool TryGetFreshToken(int64_t now, std::string& token);
  std::string Refresh(int64_t now);

  std::unique_ptr<ICredential> credential_;
  int64_t marginMs_;
  std::mutex refreshMutex_;  // held during a refresh, so that only one runs at a time
  std::mutex stateMutex_;    // protects the members below
  AccessToken token_;
  int64_t refreshAt_ = 0;           // token_ is served while now < refreshAt_
  uint64_t refreshCount_ = 0;       // completed refreshes, successful or not
  std::exception_ptr lastFailure_;  // the exception of the last refresh, null if it worked
  std::string lastError_;
};
}  // namespace AzureDicom
