#pragma once

#include "Common/Logger.h"
#include "Sync/InstanceResolver.h"
#include "Sync/Outbox.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
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
  uint64_t Poll();

  // Runs Poll() in a thread: when woken, and every few seconds in case a wake-up was missed.
  void Start();
  void Stop();

  // Called from Orthanc's stored-instance callback: only notifies, never blocks on I/O.
  void Wake();

  std::string GetLastError();

private:
  // Sets contentMd5 of the instances whose items the service has confirmed.
  void AddDigestsOfConfirmed(std::vector<NewInstance>& instances);

  void Run();
  void SetLastError(const std::string& message);

  static const unsigned int PAGE_SIZE = 500;
  static const unsigned int POLL_INTERVAL_MS = 2000;
  static const unsigned int ERROR_DELAY_MS = 5000;

  IOrthancGateway& orthanc_;
  Outbox& outbox_;
  ILogger& logger_;
  InstanceResolver resolver_;
  std::function<void()> onQueued_;

  std::mutex mutex_;
  std::condition_variable wakeUp_;
  bool woken_ = false;
  bool stopping_ = false;
  std::thread thread_;
  std::string lastError_;
};
}  // namespace AzureDicom
