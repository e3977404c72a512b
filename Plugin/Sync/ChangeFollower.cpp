#include "Sync/ChangeFollower.h"

#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Common/ThreadPriority.h"
#include "Sync/InstanceFiles.h"

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


int64_t ChangeFollower::FindPositionBefore(int64_t end, const std::string& orthancId)
{
  int64_t cursor = end;
  for (unsigned int page = 0; page < FIRST_START_MAX_PAGES && cursor > 0; page++)
  {
    const int64_t since = std::max<int64_t>(0, cursor - PAGE_SIZE);
    const std::string uri =
        "/changes?since=" + std::to_string(since) + "&limit=" + std::to_string(PAGE_SIZE);
    Json::Value answer;
    orthanc_.GetJson(answer, uri);

    for (const Json::Value& change : answer["Changes"])
    {
      const int64_t seq = GetInteger(change, "Seq", uri);
      if (seq <= cursor && change["ChangeType"].asString() == "NewInstance" &&
          change["ID"].asString() == orthancId)
      {
        return seq - 1;
      }
    }
    cursor = since;
  }

  logger_.Warning("first start: instance " + orthancId + ", stored after the plugin was loaded, "
                  "is not in the last changes; following from sequence " + std::to_string(end));
  return end;
}


uint64_t ChangeFollower::Poll()
{
  int64_t sequence = outbox_.GetFollowerSequence();
  if (sequence < 0)
  {
    // Orthanc accepts stores before this first poll, so the follower starts before the first
    // instance that Orthanc stored after loading the plugin (NoteStoredInstance).
    Json::Value last;
    orthanc_.GetJson(last, "/changes?last");
    const int64_t end = GetInteger(last, "Last", "/changes?last");
    std::string firstStored;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      firstStored = firstStoredInstance_;
    }
    sequence = firstStored.empty() ? end : FindPositionBefore(end, firstStored);
    outbox_.QueueFromChanges({}, sequence, NowMs());
    logger_.Info("first start: following Orthanc's changes from sequence " +
                 std::to_string(sequence) +
                 "; use POST /azure-dicom/sync to mirror instances stored before");
  }

  // The pages are read from the committed position, past the changes already queued above it,
  // so that a change whose sequence number was skipped is still found when it comes.
  ForgetUpTo(sequence);
  int64_t cursor = sequence;
  uint64_t inserted = 0;
  for (;;)
  {
    const std::string uri =
        "/changes?since=" + std::to_string(cursor) + "&limit=" + std::to_string(PAGE_SIZE);
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
        gaps_.clear();
        queuedAbove_.clear();
        outbox_.QueueFromChanges({}, last, NowMs());
      }
      return inserted;
    }

    const int64_t now = NowMs();
    std::vector<NewInstance> instances;
    std::vector<int64_t> queued;
    for (const Json::Value& change : changes)
    {
      const int64_t seq = GetInteger(change, "Seq", uri);
      NoteGaps(cursor, seq, now);
      cursor = std::max(cursor, seq);
      gaps_.erase(seq);
      if (queuedAbove_.count(seq) > 0)
      {
        continue;
      }

      queued.push_back(seq);
      if (GetStringMember(change, "ChangeType") != "NewInstance")
      {
        continue;
      }

      // An instance deleted since it was stored is gone: nothing to mirror. Orthanc's store
      // callback notes nearly every new instance in the cache, and its deletion removes it.
      NewInstance instance;
      const std::string orthancId = GetStringMember(change, "ID");
      if ((storedInstances_ != nullptr && storedInstances_->Take(instance, orthancId)) ||
          resolver_.Resolve(instance, orthancId))
      {
        instances.push_back(instance);
      }
    }

    const int64_t reached = std::max(sequence, GetCommittablePosition(cursor, now));
    AddDigestsOfConfirmed(instances);
    inserted += outbox_.QueueFromChanges(instances, reached, now).inserted;
    sequence = reached;
    queuedAbove_.insert(queued.begin(), queued.end());
    ForgetUpTo(sequence);

    if (answer["Done"].asBool())
    {
      return inserted;
    }
  }
}


void ChangeFollower::NoteGaps(int64_t previous, int64_t seq, int64_t now)
{
  // A jump larger than this is a change log that was cleared or restarted, not a transaction
  // that is still running.
  if (seq - previous > MAX_GAP_CHANGES)
  {
    return;
  }

  for (int64_t missing = previous + 1; missing < seq; missing++)
  {
    gaps_.emplace(missing, now);  // keeps the time it was first seen
  }
}


int64_t ChangeFollower::GetCommittablePosition(int64_t cursor, int64_t now) const
{
  for (const auto& gap : gaps_)
  {
    if (now - gap.second < gapWaitMs_)
    {
      return std::min(cursor, gap.first - 1);
    }
  }
  return cursor;
}


void ChangeFollower::ForgetUpTo(int64_t sequence)
{
  gaps_.erase(gaps_.begin(), gaps_.upper_bound(sequence));
  queuedAbove_.erase(queuedAbove_.begin(), queuedAbove_.upper_bound(sequence));
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
  wakeSignal_.Raise();
  if (thread_.joinable())
  {
    thread_.join();
  }
}


void ChangeFollower::NoteStoredInstance(const std::string& orthancId)
{
  // Once the first store is noted, no store takes the lock, so later stores never wait for
  // the follower.
  if (firstStoreNoted_)
  {
    return;
  }

  std::lock_guard<std::mutex> lock(mutex_);
  if (firstStoredInstance_.empty())
  {
    firstStoredInstance_ = orthancId;
  }
  firstStoreNoted_ = true;
}


void ChangeFollower::Wake()
{
  if (acceptsWakes_)
  {
    wakeSignal_.Raise();
  }
}


bool ChangeFollower::WaitBeforePoll(unsigned int delayMs, bool wakesEndWait)
{
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(delayMs);
  for (;;)
  {
    if (stopping_)
    {
      return false;
    }

    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
    {
      return true;
    }

    // Rounded up, so that the last wait does not return just before the deadline.
    const auto remaining =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    if (wakeSignal_.Wait(static_cast<unsigned int>(remaining)) && wakesEndWait && !stopping_)
    {
      return true;
    }
  }
}


std::string ChangeFollower::GetLastError()
{
  std::lock_guard<std::mutex> lock(mutex_);
  return lastError_;
}


ChangeFollower::Failure ChangeFollower::GetLastFailure()
{
  std::lock_guard<std::mutex> lock(mutex_);
  return lastFailure_;
}


void ChangeFollower::SetLastError(const std::string& message)
{
  std::lock_guard<std::mutex> lock(mutex_);
  lastError_ = message;
  if (!message.empty())
  {
    lastFailure_.message = message;
    lastFailure_.timeMs = NowMs();
  }
}


bool ChangeFollower::DefersPollInBurst(int64_t now)
{
  return ingestion_->ShouldHold(now) &&
         (storedInstances_ == nullptr ||
          storedInstances_->GetSize() < StoredInstanceCache::BURST_POLL_ENTRIES);
}


void ChangeFollower::Run()
{
  NameCurrentThread("azure-follower");
  MirrorThreadPriority priority(logger_, reportedPriority_);
  unsigned int delayMs = 0;
  bool failing = false;
  bool inBurst = false;
  int64_t lastPollMs = 0;
  for (;;)
  {
    // After a failure, new instances do not cut the delay short: each stored instance wakes
    // the follower, and retrying at that rate would only repeat the error. Neither do they
    // while Orthanc ingests a burst.
    const bool wakesEndWait = !failing && !inBurst;
    acceptsWakes_ = wakesEndWait;
    if (!WaitBeforePoll(delayMs, wakesEndWait))
    {
      return;
    }

    // During a burst, the change log keeps what Orthanc stores between two polls.
    const int64_t now = NowMs();
    inBurst = ingestion_ != nullptr && ingestion_->IsInBurst(now);
    if (!inBurst && !failing)
    {
      acceptsWakes_ = true;  // set before the poll, so that a store after it ends the next wait
    }
    if (inBurst && (now - lastPollMs < BURST_POLL_MS || DefersPollInBurst(now)))
    {
      delayMs = BURST_CHECK_MS;
      continue;
    }

    try
    {
      priority.Adjust(ingestion_ != nullptr && ingestion_->IsIngesting(now));
      lastPollMs = now;
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
      delayMs = inBurst ? BURST_CHECK_MS : POLL_INTERVAL_MS;
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
