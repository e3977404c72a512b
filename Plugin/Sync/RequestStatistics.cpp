#include "Sync/RequestStatistics.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace AzureDicom
{
namespace
{
const double P95 = 0.95;

bool IsSuccess(long status)
{
  return status >= 200 && status < 300;
}
}  // namespace


void RequestStatistics::Record(int64_t timeMs, long status, double latencyMs)
{
  std::lock_guard<std::mutex> lock(mutex_);
  samples_.push_back({timeMs, status, static_cast<float>(latencyMs)});

  const int64_t oldest = timeMs - static_cast<int64_t>(HISTORY_SECONDS) * 1000;
  while (!samples_.empty() && (samples_.front().timeMs < oldest || samples_.size() > MAX_SAMPLES))
  {
    samples_.pop_front();
  }
}


RequestSummary RequestStatistics::Summarize(int64_t nowMs, unsigned int windowSeconds)
{
  RequestSummary summary;
  summary.windowSeconds = windowSeconds;
  const int64_t since = nowMs - static_cast<int64_t>(windowSeconds) * 1000;

  std::vector<float> latencies;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto sample = samples_.rbegin(); sample != samples_.rend() && sample->timeMs >= since;
         ++sample)
    {
      summary.requests++;
      latencies.push_back(sample->latencyMs);
      if (!IsSuccess(sample->status))
      {
        summary.errors++;
        summary.errorsByStatus[sample->status]++;
      }
    }
  }

  if (summary.requests == 0)
  {
    return summary;
  }

  summary.requestsPerSecond = static_cast<double>(summary.requests) / windowSeconds;
  summary.errorRate = static_cast<double>(summary.errors) / static_cast<double>(summary.requests);

  // The nearest-rank percentile: the smallest latency with at least 95 % of the others at or
  // below it.
  const size_t rank = static_cast<size_t>(std::ceil(P95 * static_cast<double>(latencies.size())));
  const size_t index = rank == 0 ? 0 : rank - 1;
  std::nth_element(latencies.begin(), latencies.begin() + index, latencies.end());
  summary.p95LatencyMs = latencies[index];
  return summary;
}
}  // namespace AzureDicom
