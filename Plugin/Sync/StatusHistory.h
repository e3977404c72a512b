#pragma once

#include "Sync/Outbox.h"

#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

namespace AzureDicom
{
// One sample of the mirror's state, for the dashboard's chart of backlog and throughput.
struct StatusSample
{
  int64_t timeMs = 0;
  StateCounts counts;
  uint64_t sentInstances = 0;  // totals since Orthanc started
  uint64_t sentBytes = 0;
};


// The samples of the last hour, at most one per interval, kept in memory only.
class StatusHistory
{
public:
  static constexpr unsigned int INTERVAL_SECONDS = 10;
  static constexpr unsigned int HISTORY_SECONDS = 3600;

  // Adds the sample unless the last one is less than an interval old; returns true if added.
  bool Add(const StatusSample& sample);

  // Samples not older than HISTORY_SECONDS before nowMs, oldest first.
  std::vector<StatusSample> Get(int64_t nowMs);

private:
  std::mutex mutex_;
  std::deque<StatusSample> samples_;
};
}  // namespace AzureDicom
