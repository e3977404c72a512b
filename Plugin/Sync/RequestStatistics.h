#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>

namespace AzureDicom
{
// The requests of one time window, summed up for the dashboard's tiles.
struct RequestSummary
{
  unsigned int windowSeconds = 0;
  uint64_t requests = 0;
  double requestsPerSecond = 0;
  double p95LatencyMs = 0;  // 0 without requests
  uint64_t errors = 0;      // every response but 2xx, and requests without a response
  double errorRate = 0;     // errors / requests, 0 without requests
  std::map<long, uint64_t> errorsByStatus;  // 0 for requests that got no response
};


// The STOW-RS requests of the last hour, thread-safe. Memory stays bounded: beyond
// MAX_SAMPLES requests in the hour, the oldest are forgotten first.
class RequestStatistics
{
public:
  // status is the HTTP status, or 0 when no response came (network error, timeout).
  void Record(int64_t timeMs, long status, double latencyMs);

  RequestSummary Summarize(int64_t nowMs, unsigned int windowSeconds);

  static constexpr unsigned int HISTORY_SECONDS = 3600;
  static constexpr size_t MAX_SAMPLES = 200000;

private:
  struct Sample
  {
    int64_t timeMs;
    long status;
    float latencyMs;
  };

  std::mutex mutex_;
  std::deque<Sample> samples_;
};
}  // namespace AzureDicom
