#include "Sync/RetryPolicy.h"

#include <algorithm>
#include <cmath>

namespace AzureDicom
{
namespace
{
// More doublings than the binary orders between the smallest positive double and the largest
// (2098), so that any positive initial delay reaches the maximum delay before this bound.
constexpr unsigned int kMaxExponent = 4096;
}  // namespace


double RetryPolicy::GetExponentialDelay(unsigned int failures, double jitter) const
{
  // std::ldexp returns infinity on overflow, which the maximum delay then caps.
  const unsigned int exponent = std::min(std::max(failures, 1u) - 1, kMaxExponent);
  const double delay =
      std::min(std::ldexp(settings_.initialDelaySeconds, static_cast<int>(exponent)),
               settings_.maxDelaySeconds);
  const double clampedJitter = std::min(std::max(jitter, 0.0), 1.0);
  return delay * (0.5 + 0.5 * clampedJitter);
}


double RetryPolicy::GetItemDelaySeconds(unsigned int attempts, double jitter) const
{
  return GetExponentialDelay(attempts, jitter);
}


double RetryPolicy::GetDestinationDelaySeconds(unsigned int failures, double retryAfterSeconds,
                                               double jitter) const
{
  if (retryAfterSeconds >= 0)
  {
    return std::min(retryAfterSeconds, settings_.maxDelaySeconds);
  }

  return GetExponentialDelay(failures, jitter);
}
}  // namespace AzureDicom
