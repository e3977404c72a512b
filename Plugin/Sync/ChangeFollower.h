#pragma once

#include "Common/Logger.h"
#include "Common/ThreadPriority.h"
#include "Common/WakeSignal.h"
#include "Sync/InstanceResolver.h"
#include "Sync/Outbox.h"
#include "Sync/StoredInstanceCache.h"

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace AzureDicom
{
// Follows Orthanc's change log (/changes) and queues every new instance in the outbox, together
// with the sequence it reached, in one transaction. Because the position is committed with the
// items, an instance stored while the plugin was down, or in the instant before a crash, is
// queued when the follower next runs.
class ChangeFollower
{
public:
  // onQueued, if set, is called from the follower's thread after new items were queued.
  ChangeFollower(IOrthancGateway& orthanc, Outbox& outbox, ILogger& logger,
                 std::function<void()> onQueued = nullptr);
  ~ChangeFollower();

  // Reads the changes after the committed sequence until the end of the log and queues their
  // new instances; returns how many were inserted. The first run on an empty outbox starts at
  // the current end of the log: an archive stored before is queued by a back-fill instead.
  //
  // With a PostgreSQL index, Orthanc's transactions commit out of sequence order, and a rolled
  // back one leaves its number unused, so the log can show change N+1 before change N. The
  // committed position then stays below such a gap for up to GAP_WAIT_MS, while the changes
  // above it are queued at once, so that a late change N is still read. After GAP_WAIT_MS the
  // number counts as unused.
  // NOTE: a node that takes over reads the changes above an open gap again, so an item of them
  // that ended Failed meanwhile is queued again, as if Orthanc had stored it again.
  uint64_t Poll();

  // How long a missing sequence number keeps the committed position back, by default.
  static constexpr int64_t GAP_WAIT_MS = 30000;

  // Sets that time. Call before Start().
  void SetGapWait(int64_t milliseconds)
  {
    gapWaitMs_ = milliseconds;
  }

  // While monitor reports that Orthanc ingests, the follower's thread yields the CPU to it
  // (MirrorThreadPriority). During a burst it polls once the workers' hold ends, or once per
  // BURST_POLL_MS when the stored-instance cache is three quarters full
  // (StoredInstanceCache::BURST_POLL_ENTRIES). Call it before Start().
  void SetIngestionMonitor(IngestionMonitor* monitor)
  {
    ingestion_ = monitor;
  }

  // Poll() takes the new instances that are in cache from there, instead of looking them up in
  // Orthanc. Call it before Start().
  void SetStoredInstanceCache(StoredInstanceCache* cache)
  {
    storedInstances_ = cache;
  }

  // Runs Poll() in a thread: when woken, and every few seconds in case a wake-up was missed.
  void Start();
  void Stop();

  // Called from Orthanc's stored-instance callback: only notifies, and takes no lock. During a
  // burst or after a failure it does nothing, because a wake-up would not end the wait then.
  void Wake();

  // Returns whether Wake() wakes the follower now.
  bool AcceptsWakes() const
  {
    return acceptsWakes_;
  }

  // Called from the same callback with the stored instance's ID. On a first start, the
  // follower begins before the first instance stored after the plugin was loaded, so that an
  // instance stored before its first poll is queued too.
  void NoteStoredInstance(const std::string& orthancId);

  // Returns the current error, empty while the follower queues new instances.
  std::string GetLastError();

  // The last error of the follower, kept after it recovers. timeMs is 0 before any error.
  struct Failure
  {
    std::string message;
    int64_t timeMs = 0;
  };

  Failure GetLastFailure();

private:
  // Sets contentMd5 of the instances whose items the service has confirmed.
  void AddDigestsOfConfirmed(std::vector<NewInstance>& instances);

  void Run();

  // Returns whether a poll during a burst waits: while the workers hold (MAX_BURST_HOLD_MS) and
  // the stored-instance cache has fewer than BURST_POLL_ENTRIES. The change log keeps the
  // burst's stores meanwhile, and a poll would only take Orthanc's index lock from the stores.
  bool DefersPollInBurst(int64_t now);

  // Waits delayMs, or until Wake() when wakesEndWait. Returns false when Stop() was called.
  bool WaitBeforePoll(unsigned int delayMs, bool wakesEndWait);
  void SetLastError(const std::string& message);

  // Records the sequence numbers between previous and seq as missing since now.
  void NoteGaps(int64_t previous, int64_t seq, int64_t now);

  // The highest position below every missing number that is younger than the gap wait.
  int64_t GetCommittablePosition(int64_t cursor, int64_t now) const;

  // Drops what Poll() remembers of the changes up to the committed sequence.
  void ForgetUpTo(int64_t sequence);

  // Returns the position before the NewInstance change of orthancId, looking back from the end
  // of the log at end, or end when it is not found.
  int64_t FindPositionBefore(int64_t end, const std::string& orthancId);

  static constexpr int64_t MAX_GAP_CHANGES = 10000;

  static constexpr unsigned int PAGE_SIZE = 500;
  static constexpr unsigned int FIRST_START_MAX_PAGES = 10;  // looked back on a first start
  static constexpr unsigned int POLL_INTERVAL_MS = 2000;
  static constexpr unsigned int ERROR_DELAY_MS = 5000;
  // During a burst, the follower queues what Orthanc stored at most once per BURST_POLL_MS
  // instead of at each store, which costs Orthanc fewer requests. It checks every
  // BURST_CHECK_MS whether the burst has ended, so that the burst is queued when the workers
  // start sending it.
  static constexpr unsigned int BURST_CHECK_MS = 50;
  static constexpr unsigned int BURST_POLL_MS = 1000;

  IOrthancGateway& orthanc_;
  Outbox& outbox_;
  ILogger& logger_;
  InstanceResolver resolver_;
  std::function<void()> onQueued_;
  IngestionMonitor* ingestion_ = nullptr;
  StoredInstanceCache* storedInstances_ = nullptr;
  std::atomic<bool> reportedPriority_{false};  // that the follower stays at nice 10
  // Whether Wake() raises the signal. It is set before the poll that precedes a wait that
  // wake-ups end, so that a store that this poll misses still ends the wait.
  std::atomic<bool> acceptsWakes_{true};
  std::string firstStoredInstance_;  // the first that NoteStoredInstance() got, under mutex_
  std::atomic<bool> firstStoreNoted_{false};

  std::mutex mutex_;
  WakeSignal wakeSignal_;  // raised by Wake() and Stop()
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::string lastError_;
  Failure lastFailure_;

  // Used by Poll() only: the missing sequence numbers above the committed position, with the
  // time each was first seen, and the changes above that position that are already queued.
  int64_t gapWaitMs_ = GAP_WAIT_MS;
  std::map<int64_t, int64_t> gaps_;
  std::set<int64_t> queuedAbove_;
};
}  // namespace AzureDicom
