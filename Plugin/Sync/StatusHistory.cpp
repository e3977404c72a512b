#include "Sync/StatusHistory.h"

namespace AzureDicom
{
namespace
{
// A sample may come this much early, because the monitor's timer drifts around the interval.
const int64_t INTERVAL_SLACK_MS = 500;
}  // namespace


bool StatusHistory::Add(const StatusSample& sample)
{
  std::lock_guard<std::mutex> lock(mutex_);
  if (!samples_.empty() &&
      sample.timeMs - samples_.back().timeMs < INTERVAL_SECONDS * 1000 - INTERVAL_SLACK_MS)
  {
    return false;
  }

  samples_.push_back(sample);
  const int64_t oldest = sample.timeMs - static_cast<int64_t>(HISTORY_SECONDS) * 1000;
  while (samples_.front().timeMs < oldest)
  {
    samples_.pop_front();
  }
  return true;
}


std::vector<StatusSample> StatusHistory::Get(int64_t nowMs)
{
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t oldest = nowMs - static_cast<int64_t>(HISTORY_SECONDS) * 1000;
  std::vector<StatusSample> result;
  for (const StatusSample& sample : samples_)
  {
    if (sample.timeMs >= oldest)
    {
      result.push_back(sample);
    }
  }
  return result;
}
}  // namespace AzureDicom
