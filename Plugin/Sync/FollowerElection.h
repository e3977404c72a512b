#pragma once

#include "Common/Logger.h"
#include "Sync/ChangeFollower.h"
#include "Sync/Outbox.h"

#include <condition_variable>
#include <mutex>
#include <thread>

namespace AzureDicom
{
// Runs the change follower on one node at a time. Every few seconds, each node tries to take or
// keep the outbox's follower lock (Outbox::TryHoldFollowerLock): the node that holds it runs the
// follower, and a node that loses it stops its follower. When the node that follows dies, the
// database server releases its lock, and another node takes over at its next try. With SQLite
// the lock is always held, so the follower runs from Start() to Stop().
class FollowerElection
{
public:
  FollowerElection(Outbox& outbox, ChangeFollower& follower, ILogger& logger);
  ~FollowerElection();

  void Start();

  // Stops the follower and releases the lock.
  void Stop();

  // True while this node runs the follower.
  bool IsFollowing();

  static constexpr unsigned int RETRY_INTERVAL_MS = 3000;

private:
  void Run();

  // Takes or checks the lock once and starts or stops the follower to match.
  void Elect();

  Outbox& outbox_;
  ChangeFollower& follower_;
  ILogger& logger_;

  std::mutex mutex_;
  std::condition_variable wakeUp_;
  bool stopping_ = false;
  bool following_ = false;
  std::thread thread_;
};
}  // namespace AzureDicom
