#include "Sync/RetryPolicy.h"

#include <algorithm>
#include <cmath>

namespace AzureDicom
{
double RetryPolicy::GetExponentialDelay(unsigned int failures, double jitter) const
{
  // Past 2^30 the delay is capped anyway; bounding the exponent avoids overflow.
  const unsigned int exponent = std::min(std::max(failures, 1u) - 1, 30u);
  const double delay = std::min(settings_.initialDelaySeconds * std::ldexp(1.0, exponent),
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
