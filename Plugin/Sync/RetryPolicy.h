#pragma once

#include "Sync/Configuration.h"

namespace AzureDicom
{
// Delays before the next attempt, exponential from InitialDelaySeconds up to MaxDelaySeconds.
// The jitter argument, uniform in [0, 1), spreads retries over [delay / 2, delay] so that the
// workers of several nodes do not all come back at the same instant.
class RetryPolicy
{
public:
  explicit RetryPolicy(const RetrySettings& settings) : settings_(settings)
  {
  }

  // Delay before retrying an item that has failed `attempts` times (at least 1).
  double GetItemDelaySeconds(unsigned int attempts, double jitter) const;

  // True when an item that has failed `attempts` times must not be tried again.
  bool IsExhausted(unsigned int attempts) const
  {
    return attempts >= settings_.maxAttempts;
  }

  unsigned int GetMaxAttempts() const
  {
    return settings_.maxAttempts;
  }

  // Delay before the dispatcher tries the destination again after `failures` destination-wide
  // errors in a row. A Retry-After of the service (retryAfterSeconds >= 0) wins over the
  // exponential delay, but never beyond MaxDelaySeconds.
  double GetDestinationDelaySeconds(unsigned int failures, double retryAfterSeconds,
                                    double jitter) const;

private:
  double GetExponentialDelay(unsigned int failures, double jitter) const;

  RetrySettings settings_;
};
}  // namespace AzureDicom
