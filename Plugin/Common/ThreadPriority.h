#pragma once

#include "Common/Logger.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace AzureDicom
{
// The nice value (0 to 19) of the threads that mirror instances while Orthanc ingests, where
// they cannot return to Orthanc's priority afterwards. Linux's scheduler then gives Orthanc's
// own threads, which store what modalities send, about ten times their CPU share when both
// compete for the CPU; an idle CPU still runs the mirror at full speed.
constexpr int MIRROR_THREAD_NICENESS = 10;

// How long after Orthanc stored an instance the mirror still counts it as ingesting.
constexpr int64_t INGESTION_WINDOW_MS = 2000;

// Names the calling thread, as top -H and /proc/<pid>/task/<tid>/comm show it, so that an
// administrator can distinguish the mirror's threads from Orthanc's. Linux keeps 15 characters.
void NameCurrentThread(const std::string& name);

// Lowers the scheduling priority of the calling thread to the nice value niceness, which Linux
// applies per thread. Logs a warning and goes on at the current priority when the system refuses.
void LowerCurrentThreadPriority(int niceness, ILogger& logger);

// Sets the nice value of the calling thread. Returns false, with errno set, when the system
// refuses: a lower value than the current one needs CAP_SYS_NICE or a high RLIMIT_NICE.
bool SetCurrentThreadNiceness(int niceness);

// Returns the nice value of the calling thread.
int GetCurrentThreadNiceness();

// Moves the calling thread to Linux's SCHED_IDLE policy, under which it runs only on CPU time
// that no other thread wants, or back to SCHED_OTHER. Returns false, with errno set, when the
// system rejects it, because leaving SCHED_IDLE needs the same permission as raising a priority.
bool SetCurrentThreadIdle(bool idle);

// Whether the calling thread may return from SCHED_IDLE or from a higher nice value to its
// current nice value: it has CAP_SYS_NICE, or RLIMIT_NICE allows that value.
bool CanRestoreCurrentThreadPriority();

// Returns whether the calling thread runs under SCHED_IDLE, as SetCurrentThreadIdle() set it.
bool IsCurrentThreadIdle();


// A scope in which the calling thread, if it runs under SCHED_IDLE, runs under SCHED_OTHER, and
// after which it returns to SCHED_IDLE. A call into Orthanc's REST API may take
// Orthanc's index lock, and a mirroring thread that held that lock while it waited for idle CPU
// time would stall every store waiting for the lock.
class OrthancCallPriority
{
public:
  OrthancCallPriority();
  ~OrthancCallPriority();

  OrthancCallPriority(const OrthancCallPriority&) = delete;
  OrthancCallPriority& operator=(const OrthancCallPriority&) = delete;

private:
  bool raised_;
};


// The rate of stores, per second, from which Orthanc counts as ingesting a burst: an import, a
// router or a modality that sends a large study. The workers then wait until the burst ends.
constexpr unsigned int BURST_STORES_PER_SECOND = 50;

// The maximum wait for a burst to end. During a longer one, the mirror sends on idle CPU time.
// Measured with Resources/bench.sh on two 2-core machines: one C-STORE association of 20,000
// instances of 2 KB lasts 16 to 21 s. Sending during it cost Orthanc about 6 % of its rate,
// because the kernel's and the target's part of each upload does not run on idle time.
constexpr int64_t MAX_BURST_HOLD_MS = 30000;

// A burst has ended when Orthanc stored nothing for this long, even if the rate over the last
// second is still high. At the lowest burst rate, this is five intervals between stores. A
// longer pause within a burst lets the workers start batches until the next store.
constexpr int64_t BURST_END_GAP_MS = 100;


// Orthanc's recent stores, which its store callback notes and the mirroring threads read. The
// callback takes no lock: Orthanc 1.10 runs the store callbacks under one global mutex, so a
// mirroring thread that held a lock of the callback while waiting for CPU time under
// SCHED_IDLE would stall every store.
class IngestionMonitor
{
public:
  void NoteStore(int64_t nowMs);

  // Returns whether Orthanc stored an instance in the last INGESTION_WINDOW_MS.
  bool IsIngesting(int64_t nowMs) const
  {
    return nowMs - lastStoreMs_ < INGESTION_WINDOW_MS;
  }

  // Returns the number of stores in the last second, estimated from two one-second buckets.
  unsigned int GetStoresPerSecond(int64_t nowMs);

  // Returns whether Orthanc ingests a burst: it stores at least BURST_STORES_PER_SECOND and
  // stored an instance in the last BURST_END_GAP_MS.
  bool IsInBurst(int64_t nowMs);

  // Returns whether the mirroring threads should wait: Orthanc ingests a burst, and has been
  // ingesting it for less than MAX_BURST_HOLD_MS.
  bool ShouldHold(int64_t nowMs);

private:
  unsigned int Estimate(int64_t nowMs) const;

  std::atomic<int64_t> lastStoreMs_{-INGESTION_WINDOW_MS};
  std::atomic<int64_t> second_{0};  // the bucket of storesThisSecond_, in seconds
  std::atomic<unsigned int> storesThisSecond_{0};
  std::atomic<unsigned int> storesLastSecond_{0};  // in the second before second_

  std::mutex mutex_;  // protects burstStartMs_, which only the mirroring threads use
  int64_t burstStartMs_ = 0;  // 0 when Orthanc is not ingesting a burst
};


// The priority of one mirroring thread, created and adjusted by that thread. While Orthanc
// ingests, the thread runs under SCHED_IDLE, and at its first priority again afterwards. Where
// it could not return (no CAP_SYS_NICE), it goes to nice MIRROR_THREAD_NICENESS at the first
// ingestion instead and stays there, which is logged once for all threads that share
// reported.
class MirrorThreadPriority
{
public:
  MirrorThreadPriority(ILogger& logger, std::atomic<bool>& reported);

  void Adjust(bool ingesting);

  bool IsYielding() const
  {
    return yielding_;
  }

private:
  ILogger& logger_;
  std::atomic<bool>& reported_;
  bool canRestore_;
  bool yielding_ = false;
};
}  // namespace AzureDicom
