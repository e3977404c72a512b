#include "Sync/FollowerElection.h"

#include "Common/ThreadPriority.h"

#include <chrono>

namespace AzureDicom
{
FollowerElection::FollowerElection(Outbox& outbox, ChangeFollower& follower, ILogger& logger)
    : outbox_(outbox), follower_(follower), logger_(logger)
{
}


FollowerElection::~FollowerElection()
{
  Stop();
}


void FollowerElection::Start()
{
  std::lock_guard<std::mutex> lock(mutex_);
  if (!thread_.joinable())
  {
    stopping_ = false;
    thread_ = std::thread(&FollowerElection::Run, this);
  }
}


void FollowerElection::Stop()
{
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wakeUp_.notify_all();
  if (thread_.joinable())
  {
    thread_.join();
  }

  follower_.Stop();
  outbox_.ReleaseFollowerLock();

  std::lock_guard<std::mutex> lock(mutex_);
  following_ = false;
}


bool FollowerElection::IsFollowing()
{
  std::lock_guard<std::mutex> lock(mutex_);
  return following_;
}


void FollowerElection::Elect()
{
  const bool lockHeld = outbox_.TryHoldFollowerLock();
  const bool wasFollowing = IsFollowing();
  if (lockHeld && !wasFollowing)
  {
    if (outbox_.IsShared())
    {
      logger_.Warning("this node (" + outbox_.GetNodeName() +
                      ") took the follower lock and follows Orthanc's change log");
    }
    follower_.Start();
  }
  else if (!lockHeld && wasFollowing)
  {
    // The lock's connection failed, and another node may already follow.
    logger_.Warning("this node (" + outbox_.GetNodeName() +
                    ") lost the follower lock and stops following Orthanc's change log; it "
                    "tries again every " +
                    std::to_string(RETRY_INTERVAL_MS / 1000) + " s");
    follower_.Stop();
  }

  std::lock_guard<std::mutex> lock(mutex_);
  following_ = lockHeld;
}


void FollowerElection::Run()
{
  NameCurrentThread("azure-election");
  for (;;)
  {
    Elect();

    std::unique_lock<std::mutex> lock(mutex_);
    wakeUp_.wait_for(lock, std::chrono::milliseconds(RETRY_INTERVAL_MS),
                     [this] { return stopping_; });
    if (stopping_)
    {
      return;
    }
  }
}
}  // namespace AzureDicom
