#include "Sync/ChangeFollower.h"

#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Sync/InstanceDigest.h"

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

namespace AzureDicom
{
ChangeFollower::ChangeFollower(IOrthancGateway& orthanc, Outbox& outbox, ILogger& logger,
                               std::function<void()> onQueued) :
    orthanc_(orthanc),
    outbox_(outbox),
    logger_(logger),
    resolver_(orthanc),
    onQueued_(std::move(onQueued))
{
}


ChangeFollower::~ChangeFollower()
{
  Stop();
}


static int64_t GetInteger(const Json::Value& answer, const char* name, const std::string& uri)
{
  if (!answer.isObject() || !answer[name].isInt64())
  {
    throw Exception(ErrorCode::ProtocolError,
                    "Orthanc's response to " + uri + " has no integer \"" + name + "\"");
  }
  return answer[name].asInt64();
}


uint64_t ChangeFollower::Poll()
{
  int64_t sequence = outbox_.GetFollowerSequence();
  if (sequence < 0)
  {
    Json::Value last;
    orthanc_.GetJson(last, "/changes?last");
    sequence = GetInteger(last, "Last", "/changes?last");
    outbox_.QueueFromChanges({}, sequence, NowMs());
    logger_.Info("first start: following Orthanc's changes from sequence " +
                 std::to_string(sequence) +
                 "; use POST /azure-dicom/sync to mirror instances stored before");
    return 0;
  }

  uint64_t inserted = 0;
  for (;;)
  {
    const std::string uri =
        "/changes?since=" + std::to_string(sequence) + "&limit=" + std::to_string(PAGE_SIZE);
    Json::Value answer;
    orthanc_.GetJson(answer, uri);

    const Json::Value& changes = answer["Changes"];
    const int64_t last = GetInteger(answer, "Last", uri);
    if (!changes.isArray())
    {
      throw Exception(ErrorCode::ProtocolError, "Orthanc's response to " + uri + " has no Changes");
    }

    if (changes.empty())
    {
      if (last < sequence)
      {
        // The change log was cleared together with the database (a new Orthanc index): its
        // sequence restarts, and waiting for our old position would never queue anything.
        logger_.Warning("Orthanc's change log restarted at sequence " + std::to_string(last) +
                        " (the follower was at " + std::to_string(sequence) + "); following it");
        outbox_.QueueFromChanges({}, last, NowMs());
      }
      return inserted;
    }

    std::vector<NewInstance> instances;
    int64_t reached = sequence;
    for (const Json::Value& change : changes)
    {
      reached = std::max(reached, GetInteger(change, "Seq", uri));
      if (GetStringMember(change, "ChangeType") != "NewInstance")
      {
        continue;
      }

      // An instance deleted since it was stored is gone: nothing to mirror.
      NewInstance instance;
      if (resolver_.Resolve(instance, GetStringMember(change, "ID")))
      {
        instances.push_back(instance);
      }
    }

    AddDigestsOfConfirmed(instances);
    inserted += outbox_.QueueFromChanges(instances, reached, NowMs()).inserted;
    sequence = reached;

    if (answer["Done"].asBool())
    {
      return inserted;
    }
  }
}


void ChangeFollower::Start()
{
  std::lock_guard<std::mutex> lock(mutex_);
  if (!thread_.joinable())
  {
    stopping_ = false;
    thread_ = std::thread(&ChangeFollower::Run, this);
  }
}


void ChangeFollower::Stop()
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
}


void ChangeFollower::Wake()
{
  {
    std::lock_guard<std::mutex> lock(mutex_);
    woken_ = true;
  }
  wakeUp_.notify_one();
}


std::string ChangeFollower::GetLastError()
{
  std::lock_guard<std::mutex> lock(mutex_);
  return lastError_;
}


void ChangeFollower::SetLastError(const std::string& message)
{
  std::lock_guard<std::mutex> lock(mutex_);
  lastError_ = message;
}


void ChangeFollower::Run()
{
  unsigned int delayMs = 0;
  bool failing = false;
  for (;;)
  {
    {
      // After a failure, new instances do not cut the delay short: each stored instance wakes
      // the follower, and retrying at that rate would only repeat the error.
      std::unique_lock<std::mutex> lock(mutex_);
      wakeUp_.wait_for(lock, std::chrono::milliseconds(delayMs),
                       [this, failing] { return (woken_ && !failing) || stopping_; });
      if (stopping_)
      {
        return;
      }
      woken_ = false;
    }

    try
    {
      const uint64_t inserted = Poll();
      if (inserted > 0 && onQueued_)
      {
        onQueued_();
      }
      if (failing)
      {
        logger_.Warning("the change follower queues new instances again");
        SetLastError("");
        failing = false;
      }
      delayMs = POLL_INTERVAL_MS;
    }
    catch (const std::exception& e)
    {
      // Logged when the follower starts failing, so that a long outage does not flood the log;
      // the status shows the latest error.
      if (!failing)
      {
        logger_.Error(std::string("the change follower failed, retrying every ") +
                      std::to_string(ERROR_DELAY_MS / 1000) + " s: " + e.what());
      }
      SetLastError(e.what());
      failing = true;
      delayMs = ERROR_DELAY_MS;
    }
  }
}


void ChangeFollower::AddDigestsOfConfirmed(std::vector<NewInstance>& instances)
{
  std::vector<std::string> ids;
  for (const NewInstance& instance : instances)
  {
    ids.push_back(instance.orthancId);
  }

  // Only an instance that the service already confirmed is read here: Orthanc stored it again
  // (OverwriteInstances, or a modification that kept its UIDs), and the outbox sends it again
  // only if its content changed.
  const std::map<std::string, std::string> digests = outbox_.GetConfirmedDigests(ids);
  if (digests.empty())
  {
    return;
  }

  for (NewInstance& instance : instances)
  {
    if (digests.count(instance.orthancId) == 0)
    {
      continue;
    }

    instance.contentMd5 = GetInstanceMd5(orthanc_, instance.orthancId);
  }
}
}  // namespace AzureDicom
