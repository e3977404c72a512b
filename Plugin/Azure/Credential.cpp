#include "Azure/Credential.h"

#include "Common/Exception.h"

#include <utility>

namespace AzureDicom
{
namespace
{
const int64_t MS_PER_SECOND = 1000;
const int64_t MARGIN_TO_LIFETIME_RATIO = 2;


// The margin is meant for tokens that live an hour or more. Tokens of managed identity
// endpoints and test servers can live only minutes, and the full margin would make them stale
// on arrival, so they are refreshed at half their lifetime instead.
int64_t ComputeRefreshTime(int64_t now, int64_t expiresOn, int64_t marginMs)
{
  const int64_t lifetime = expiresOn - now;
  const int64_t margin = lifetime < MARGIN_TO_LIFETIME_RATIO * marginMs
                             ? lifetime / MARGIN_TO_LIFETIME_RATIO
                             : marginMs;
  return expiresOn - margin;
}


void CheckNewToken(const ICredential& credential, const AccessToken& token, int64_t now)
{
  if (token.value.empty())
  {
    throw Exception(ErrorCode::Unauthorized,
                    credential.GetType() +
                        " credential: the token endpoint returned an empty "
                        "access token; expected a non-empty token");
  }

  if (token.expiresOn <= now)
  {
    throw Exception(ErrorCode::Unauthorized,
                    credential.GetType() + " credential: the new token expired " +
                        std::to_string((now - token.expiresOn) / MS_PER_SECOND) +
                        " s ago; expected a future expiry. Check the system clock");
  }
}
}  // namespace


TokenCache::TokenCache(std::unique_ptr<ICredential> credential, unsigned int marginSeconds)
    : credential_(std::move(credential)), marginMs_(marginSeconds * MS_PER_SECOND)
{
  if (!credential_)
  {
    throw Exception(ErrorCode::InternalError, "TokenCache: the credential is null");
  }
}


bool TokenCache::TryGetFreshToken(int64_t now, std::string& token)
{
  std::lock_guard<std::mutex> lock(stateMutex_);
  if (token_.value.empty() || now >= refreshAt_)
  {
    return false;
  }

  token = token_.value;
  return true;
}


std::string TokenCache::GetToken(int64_t now)
{
  std::string token;
  if (TryGetFreshToken(now, token))
  {
    return token;
  }

  uint64_t refreshesBeforeWait;
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    refreshesBeforeWait = refreshCount_;
  }

  std::lock_guard<std::mutex> refreshLock(refreshMutex_);

  // Another thread may have refreshed while this one waited for refreshMutex_: its token is
  // used, and its failure is rethrown rather than sending one more request to the endpoint.
  if (TryGetFreshToken(now, token))
  {
    return token;
  }

  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    if (refreshCount_ != refreshesBeforeWait && lastFailure_)
    {
      std::rethrow_exception(lastFailure_);
    }
  }

  return Refresh(now);
}


// Called with refreshMutex_ held.
std::string TokenCache::Refresh(int64_t now)
{
  try
  {
    AccessToken token = credential_->RequestToken();
    CheckNewToken(*credential_, token, now);

    std::lock_guard<std::mutex> lock(stateMutex_);
    token_ = token;
    refreshAt_ = ComputeRefreshTime(now, token.expiresOn, marginMs_);
    refreshCount_++;
    lastFailure_ = nullptr;
    lastError_.clear();
    return token.value;
  }
  catch (const std::exception& e)
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    refreshCount_++;
    lastFailure_ = std::current_exception();
    lastError_ = e.what();
    throw;
  }
  catch (...)
  {
    std::lock_guard<std::mutex> lock(stateMutex_);
    refreshCount_++;
    lastFailure_ = std::current_exception();
    lastError_ = credential_->GetType() +
                 " credential: the token request failed with an "
                 "exception that is not a std::exception";
    throw;
  }
}


void TokenCache::Invalidate()
{
  std::lock_guard<std::mutex> lock(stateMutex_);
  token_ = AccessToken();
  refreshAt_ = 0;
}


void TokenCache::Invalidate(const std::string& rejectedToken)
{
  std::lock_guard<std::mutex> lock(stateMutex_);
  if (token_.value == rejectedToken)
  {
    token_ = AccessToken();
    refreshAt_ = 0;
  }
}


int64_t TokenCache::GetExpiresOn()
{
  std::lock_guard<std::mutex> lock(stateMutex_);
  return token_.expiresOn;
}


std::string TokenCache::GetLastError()
{
  std::lock_guard<std::mutex> lock(stateMutex_);
  return lastError_;
}
}  // namespace AzureDicom
