#include "Common/Clock.h"
#include "Common/Exception.h"
#include "DicomFileBuilder.h"
#include "Sync/ChangeFollower.h"

#include <gtest/gtest.h>

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>

using namespace AzureDicom;

namespace
{
class SilentLogger : public ILogger
{
public:
  void Info(const std::string&) override
  {
  }

  void Warning(const std::string& message) override
  {
    warnings.push_back(message);
  }

  void Error(const std::string&) override
  {
  }

  std::vector<std::string> warnings;
};


// An Orthanc whose change log and resources are in memory: instance "iN" in series "s", study
// "t". Returns /changes like Orthanc 1.10: Changes, Done, Last.
class FakeOrthanc : public IOrthancGateway
{
public:
  void StoreInstance(const std::string& id)
  {
    instances.insert(id);
    changes.push_back({++lastSequence, "NewInstance", id});
  }

  void LogOtherChange()
  {
    changes.push_back({++lastSequence, "StableStudy", "t"});
  }

  bool GetJson(Json::Value& answer, const std::string& uri) override
  {
    calls.push_back(uri);
    if (failChanges && uri.rfind("/changes?since=", 0) == 0)
    {
      throw Exception(ErrorCode::DatabaseError, "disk full");
    }
    if (uri == "/changes?last")
    {
      answer["Last"] = Json::Int64(lastSequence);
      return true;
    }

    int64_t since = 0;
    unsigned int limit = 0;
    if (std::sscanf(uri.c_str(), "/changes?since=%ld&limit=%u", &since, &limit) == 2)
    {
      policies.push_back(sched_getscheduler(static_cast<pid_t>(syscall(SYS_gettid))));
      niceness.push_back(GetCurrentThreadNiceness());
      answer["Changes"] = Json::arrayValue;
      int64_t last = since;
      for (const Change& change : changes)
      {
        if (change.sequence > since && answer["Changes"].size() < limit)
        {
          Json::Value item;
          item["Seq"] = Json::Int64(change.sequence);
          item["ChangeType"] = change.type;
          item["ID"] = change.id;
          answer["Changes"].append(item);
          last = change.sequence;
        }
      }
      answer["Done"] = (last == lastSequence || answer["Changes"].empty());
      answer["Last"] = answer["Changes"].empty() ? Json::Int64(lastSequence) : Json::Int64(last);
      return true;
    }

    if (uri.rfind("/instances/", 0) == 0)
    {
      const std::string id = uri.substr(11);
      if (instances.count(id) == 0)
      {
        return false;
      }
      answer["ID"] = id;
      answer["FileSize"] = 1000;
      answer["FileUuid"] = "0000000" + id.substr(1) + "-0000-4000-8000-000000000000";
      answer["ParentSeries"] = "s";
      answer["MainDicomTags"]["SOPInstanceUID"] = "1.2." + id.substr(1);
      return true;
    }

    if (uri == "/series/s")
    {
      answer["ParentStudy"] = "t";
      answer["MainDicomTags"]["SeriesInstanceUID"] = "1.2.100";
      return true;
    }

    if (uri == "/studies/t")
    {
      answer["MainDicomTags"]["StudyInstanceUID"] = "1.2.200";
      return true;
    }
    return false;
  }

  bool GetBinary(std::string&, const std::string&) override
  {
    return false;
  }

  struct Change
  {
    int64_t sequence;
    std::string type;
    std::string id;
  };

  std::vector<Change> changes;
  std::set<std::string> instances;
  int64_t lastSequence = 0;
  std::vector<std::string> calls;
  std::vector<int> policies;  // of the calling thread, at each read of the change log
  std::vector<int> niceness;
  std::atomic<bool> failChanges{false};  // set by a test while the follower runs
};


class ChangeFollowerTest : public ::testing::Test
{
protected:
  void SetUp() override
  {
    char pattern[] = "/tmp/follower-test-XXXXXX";
    directory_ = mkdtemp(pattern);
    outbox_ = std::make_unique<Outbox>(directory_ + "/outbox.db");
  }

  void TearDown() override
  {
    outbox_.reset();
    std::system(("rm -rf " + directory_).c_str());
  }

  // Waits up to 3 s until the outbox has a Pending item, as the follower's thread queues it.
  void WaitForPendingItem()
  {
    for (int i = 0; i < 150 && outbox_->CountByState().Get(ItemState::Pending) == 0; i++)
    {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // Stores instance i1, notes enough stores for a burst, and starts the follower's thread.
  // The instance is stored before the thread starts, because the fake is not thread-safe.
  void StartInBurst(ChangeFollower& follower, IngestionMonitor& ingestion)
  {
    orthanc_.StoreInstance("i1");
    for (unsigned int i = 0; i < 2 * BURST_STORES_PER_SECOND; i++)
    {
      ingestion.NoteStore(NowMs());
    }
    orthanc_.calls.clear();
    follower.Start();
  }

  std::string directory_;
  std::unique_ptr<Outbox> outbox_;
  FakeOrthanc orthanc_;
  SilentLogger logger_;
};
}  // namespace


TEST_F(ChangeFollowerTest, FirstStartBeginsAtEnd)
{
  orthanc_.StoreInstance("i1");
  ChangeFollower follower(orthanc_, *outbox_, logger_);

  EXPECT_EQ(0u, follower.Poll());
  EXPECT_EQ(1, outbox_->GetFollowerSequence());
  EXPECT_EQ(0u, outbox_->CountByState().Get(ItemState::Pending));

  orthanc_.StoreInstance("i2");
  EXPECT_EQ(1u, follower.Poll());
  OutboxItem item;
  ASSERT_TRUE(outbox_->FindItem(item, "i2"));
  EXPECT_EQ("1.2.2", item.instance.sopInstanceUid);
  EXPECT_EQ("1.2.100", item.instance.seriesInstanceUid);
  EXPECT_EQ("1.2.200", item.instance.studyInstanceUid);
  EXPECT_EQ("t", item.instance.orthancStudyId);
  EXPECT_EQ(1000u, item.instance.size);
  EXPECT_EQ("00000002-0000-4000-8000-000000000000", item.instance.fileUuid);
}


TEST_F(ChangeFollowerTest, FirstStartKeepsInstancesStoredSinceLoad)
{
  orthanc_.StoreInstance("i1");
  ChangeFollower follower(orthanc_, *outbox_, logger_);

  // Stored after the plugin was loaded, before the follower's first poll.
  orthanc_.StoreInstance("i2");
  follower.NoteStoredInstance("i2");
  orthanc_.StoreInstance("i3");
  follower.NoteStoredInstance("i3");

  EXPECT_EQ(2u, follower.Poll());
  OutboxItem item;
  EXPECT_FALSE(outbox_->FindItem(item, "i1"));
  EXPECT_TRUE(outbox_->FindItem(item, "i2"));
  EXPECT_TRUE(outbox_->FindItem(item, "i3"));
  EXPECT_EQ(3, outbox_->GetFollowerSequence());
}


TEST_F(ChangeFollowerTest, FirstStartLooksBackSeveralPages)
{
  orthanc_.StoreInstance("old");
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  for (int i = 0; i < 1200; i++)
  {
    orthanc_.StoreInstance("i" + std::to_string(i));
    follower.NoteStoredInstance("i" + std::to_string(i));
  }

  EXPECT_EQ(1200u, follower.Poll());
  OutboxItem item;
  EXPECT_FALSE(outbox_->FindItem(item, "old"));
}


TEST_F(ChangeFollowerTest, LaterStoresDoNotMoveFirstStart)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  follower.Poll();

  // After the first poll, a stored instance no longer matters for the start position.
  orthanc_.StoreInstance("i1");
  follower.NoteStoredInstance("i1");
  EXPECT_EQ(1u, follower.Poll());
  EXPECT_EQ(1, outbox_->GetFollowerSequence());
}


TEST_F(ChangeFollowerTest, PagesThroughLongLog)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  follower.Poll();

  for (int i = 0; i < 1234; i++)
  {
    orthanc_.StoreInstance("i" + std::to_string(i));
    if (i % 7 == 0)
    {
      orthanc_.LogOtherChange();
    }
  }

  EXPECT_EQ(1234u, follower.Poll());
  EXPECT_EQ(1234u, outbox_->CountByState().Get(ItemState::Pending));
  EXPECT_EQ(orthanc_.lastSequence, outbox_->GetFollowerSequence());
  EXPECT_EQ(0u, follower.Poll());
}


TEST_F(ChangeFollowerTest, ResumesFromCommittedSequence)
{
  {
    ChangeFollower follower(orthanc_, *outbox_, logger_);
    follower.Poll();
    orthanc_.StoreInstance("i1");
    EXPECT_EQ(1u, follower.Poll());
  }

  // Stored while the plugin was down.
  orthanc_.StoreInstance("i2");
  orthanc_.StoreInstance("i3");

  outbox_ = std::make_unique<Outbox>(directory_ + "/outbox.db");
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  EXPECT_EQ(2u, follower.Poll());
  EXPECT_EQ(3u, outbox_->CountByState().Get(ItemState::Pending));
}


TEST_F(ChangeFollowerTest, LateChangeBelowGapIsQueued)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  follower.Poll();

  // A transaction took sequence number 1 but commits after the one that took 2, as with
  // Orthanc's PostgreSQL index.
  const int64_t late = ++orthanc_.lastSequence;
  orthanc_.StoreInstance("i2");

  EXPECT_EQ(1u, follower.Poll());
  EXPECT_EQ(late - 1, outbox_->GetFollowerSequence());

  orthanc_.instances.insert("i1");
  orthanc_.changes.insert(orthanc_.changes.begin(), {late, "NewInstance", "i1"});
  EXPECT_EQ(1u, follower.Poll());
  EXPECT_EQ(2u, outbox_->CountByState().Get(ItemState::Pending));
  EXPECT_EQ(orthanc_.lastSequence, outbox_->GetFollowerSequence());
  EXPECT_EQ(0u, follower.Poll());
}


TEST_F(ChangeFollowerTest, OldGapIsPassed)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  follower.SetGapWait(0);
  follower.Poll();

  // A rolled back transaction leaves its sequence number unused.
  ++orthanc_.lastSequence;
  orthanc_.StoreInstance("i2");

  EXPECT_EQ(1u, follower.Poll());
  EXPECT_EQ(orthanc_.lastSequence, outbox_->GetFollowerSequence());
  EXPECT_EQ(1u, outbox_->CountByState().Get(ItemState::Pending));
}


TEST_F(ChangeFollowerTest, DeletedInstanceIsIgnored)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  follower.Poll();

  orthanc_.StoreInstance("i1");
  orthanc_.StoreInstance("i2");
  orthanc_.instances.erase("i1");

  EXPECT_EQ(1u, follower.Poll());
  OutboxItem item;
  EXPECT_FALSE(outbox_->FindItem(item, "i1"));
  EXPECT_TRUE(outbox_->FindItem(item, "i2"));
  EXPECT_EQ(2, outbox_->GetFollowerSequence());
}


TEST_F(ChangeFollowerTest, StoredAgainIsRequeued)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  follower.Poll();
  orthanc_.StoreInstance("i1");
  follower.Poll();

  // Deleted from Orthanc before it was sent, then stored again.
  OutboxItem item;
  ASSERT_TRUE(outbox_->FindItem(item, "i1"));
  outbox_->MarkSkipped(item.id, "deleted from Orthanc before it was sent", NowMs());
  ASSERT_TRUE(outbox_->FindItem(item, "i1"));
  ASSERT_EQ(ItemState::Skipped, item.state);

  orthanc_.StoreInstance("i1");
  follower.Poll();
  ASSERT_TRUE(outbox_->FindItem(item, "i1"));
  EXPECT_EQ(ItemState::Pending, item.state);
  EXPECT_EQ(0u, item.attempts);
}


TEST_F(ChangeFollowerTest, RestartedLogIsFollowed)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  for (int i = 0; i < 5; i++)
  {
    orthanc_.StoreInstance("i" + std::to_string(i));
  }
  follower.Poll();
  ASSERT_EQ(5, outbox_->GetFollowerSequence());

  // A new Orthanc database: the sequence starts again from 0.
  orthanc_.changes.clear();
  orthanc_.lastSequence = 0;
  EXPECT_EQ(0u, follower.Poll());
  EXPECT_EQ(0, outbox_->GetFollowerSequence());
  ASSERT_EQ(1u, logger_.warnings.size());

  orthanc_.StoreInstance("j1");
  EXPECT_EQ(1u, follower.Poll());
}


TEST_F(ChangeFollowerTest, SeriesLookupsAreCached)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  follower.Poll();
  for (int i = 0; i < 50; i++)
  {
    orthanc_.StoreInstance("i" + std::to_string(i));
  }
  orthanc_.calls.clear();
  follower.Poll();

  size_t seriesCalls = 0;
  for (const std::string& call : orthanc_.calls)
  {
    seriesCalls += (call == "/series/s");
  }
  EXPECT_EQ(1u, seriesCalls);
}


TEST_F(ChangeFollowerTest, ThreadQueuesAfterWake)
{
  bool notified = false;
  std::mutex mutex;
  ChangeFollower follower(orthanc_, *outbox_, logger_, [&]() {
    std::lock_guard<std::mutex> lock(mutex);
    notified = true;
  });
  follower.Poll();

  // Stored before the thread starts: the fake is not thread-safe.
  orthanc_.StoreInstance("i1");
  follower.Start();
  follower.Wake();
  WaitForPendingItem();
  follower.Stop();

  EXPECT_EQ(1u, outbox_->CountByState().Get(ItemState::Pending));
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_TRUE(notified);
}


TEST_F(ChangeFollowerTest, YieldsWhileOrthancIngests)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  IngestionMonitor ingestion;
  follower.SetIngestionMonitor(&ingestion);
  follower.Poll();
  const int initial = GetCurrentThreadNiceness();
  const bool canRestore = CanRestoreCurrentThreadPriority();

  // Stored before the thread starts: the fake is not thread-safe.
  orthanc_.StoreInstance("i1");
  orthanc_.policies.clear();
  orthanc_.niceness.clear();
  ingestion.NoteStore(NowMs());
  follower.Start();
  follower.Wake();
  WaitForPendingItem();
  follower.Stop();

  EXPECT_EQ(1u, outbox_->CountByState().Get(ItemState::Pending));
  ASSERT_FALSE(orthanc_.policies.empty());
  if (canRestore)
  {
    EXPECT_EQ(SCHED_IDLE, orthanc_.policies.front());
    EXPECT_EQ(initial, orthanc_.niceness.front());
  }
  else
  {
    EXPECT_EQ(SCHED_OTHER, orthanc_.policies.front());
    EXPECT_EQ(std::max(initial, MIRROR_THREAD_NICENESS), orthanc_.niceness.front());
  }
  // The test's own thread is left as it was.
  EXPECT_EQ(SCHED_OTHER, sched_getscheduler(0));
  EXPECT_EQ(initial, GetCurrentThreadNiceness());
}


namespace
{
// Notes stores at about 500 a second for 0.6 s, waking the follower at each, and returns
// whether the follower accepted wakes once the burst had started.
bool RunBurst(ChangeFollower& follower, IngestionMonitor& ingestion)
{
  bool acceptedWakes = false;
  for (int i = 0; i < 30; i++)
  {
    for (int j = 0; j < 10; j++)
    {
      ingestion.NoteStore(NowMs());
    }
    follower.Wake();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    acceptedWakes = acceptedWakes || (i >= 10 && follower.AcceptsWakes());
  }
  return acceptedWakes;
}


size_t CountPolls(const std::vector<std::string>& calls)
{
  size_t polls = 0;
  for (const std::string& call : calls)
  {
    polls += (call.rfind("/changes?since=", 0) == 0);
  }
  return polls;
}


// Notes count instances in cache, none of which the change log lists.
void FillStoredInstanceCache(StoredInstanceCache& cache, size_t count)
{
  for (size_t i = 0; i < count; i++)
  {
    const std::string sopUid = "1.2.9." + std::to_string(i);
    DicomFileBuilder builder("1.2.840.10008.1.2.1");
    builder.Add(0x0008, 0x0018, "UI", sopUid)
        .Add(0x0010, 0x0020, "LO", "PAT")
        .Add(0x0020, 0x000D, "UI", "1.2.9")
        .Add(0x0020, 0x000E, "UI", "1.2.9.0");
    const std::string file = builder.GetFile();
    ASSERT_TRUE(cache.Note(ComputeOrthancId("PAT|1.2.9|1.2.9.0|" + sopUid), file.data(),
                           file.size()));
  }
}
}  // namespace


TEST_F(ChangeFollowerTest, PollsAfterBurst)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  IngestionMonitor ingestion;
  follower.SetIngestionMonitor(&ingestion);
  follower.Poll();
  StartInBurst(follower, ingestion);

  // While the workers hold, the follower leaves the burst in the change log, and the stores do
  // not wake its thread.
  EXPECT_FALSE(RunBurst(follower, ingestion));
  EXPECT_EQ(0u, outbox_->CountByState().Get(ItemState::Pending));
  EXPECT_EQ(0u, CountPolls(orthanc_.calls));

  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(follower.AcceptsWakes());
  follower.Stop();

  // One poll after the burst's end, instead of one per wake.
  EXPECT_EQ(1u, outbox_->CountByState().Get(ItemState::Pending));
  EXPECT_GE(CountPolls(orthanc_.calls), 1u);
  EXPECT_LE(CountPolls(orthanc_.calls), 2u);
}


// Bursts while the stored-instance cache contains instances that the change log does not list.
class ChangeFollowerCacheTest : public ChangeFollowerTest
{
protected:
  // What the follower did during a burst.
  struct BurstResult
  {
    size_t polls = 0;  // reads of the change log
    size_t pending = 0;  // items queued
  };

  // Notes cached instances in a new cache, starts the follower in a burst, and returns what it
  // did until just before the burst ends.
  BurstResult RunBurstWithCache(size_t cached)
  {
    StoredInstanceCache cache;
    ChangeFollower follower(orthanc_, *outbox_, logger_);
    IngestionMonitor ingestion;
    follower.SetIngestionMonitor(&ingestion);
    follower.SetStoredInstanceCache(&cache);
    follower.Poll();
    FillStoredInstanceCache(cache, cached);
    StartInBurst(follower, ingestion);

    EXPECT_FALSE(RunBurst(follower, ingestion));
    BurstResult result;
    result.polls = CountPolls(orthanc_.calls);
    result.pending = outbox_->CountByState().Get(ItemState::Pending);
    follower.Stop();
    return result;
  }
};


TEST_F(ChangeFollowerCacheTest, DefersPollWhileCacheHasRoom)
{
  // Half the cache is full, and the other half takes the burst's stores until the hold ends.
  const BurstResult result = RunBurstWithCache(StoredInstanceCache::MAX_ENTRIES / 2);
  EXPECT_EQ(0u, result.polls);
  EXPECT_EQ(0u, result.pending);
}


TEST_F(ChangeFollowerCacheTest, PollsInBurstWhenMostlyFull)
{
  // The cache would drop entries before the burst ends, so the follower queues during it, once
  // per BURST_POLL_MS.
  const BurstResult result = RunBurstWithCache(StoredInstanceCache::BURST_POLL_ENTRIES);
  EXPECT_GE(result.polls, 1u);
  EXPECT_EQ(1u, result.pending);
}


TEST_F(ChangeFollowerTest, KeepsFailureAfterRecovery)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  follower.Poll();
  EXPECT_EQ(0, follower.GetLastFailure().timeMs);

  orthanc_.failChanges = true;
  follower.Start();
  for (int i = 0; i < 150 && follower.GetLastError().empty(); i++)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ("disk full", follower.GetLastError());

  // The next attempt comes 5 s after the failure.
  orthanc_.failChanges = false;
  for (int i = 0; i < 400 && !follower.GetLastError().empty(); i++)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  follower.Stop();

  EXPECT_EQ("", follower.GetLastError());
  const ChangeFollower::Failure failure = follower.GetLastFailure();
  EXPECT_EQ("disk full", failure.message);
  EXPECT_GT(failure.timeMs, 0);
}


TEST_F(ChangeFollowerTest, FailureIgnoresWakes)
{
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  follower.Poll();
  orthanc_.failChanges = true;
  orthanc_.calls.clear();

  follower.Start();
  for (int i = 0; i < 20; i++)
  {
    follower.Wake();
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ("disk full", follower.GetLastError());
  EXPECT_FALSE(follower.AcceptsWakes());
  follower.Stop();

  // One attempt at start; the next is due 5 s later, however many instances were stored.
  EXPECT_EQ(1u, CountPolls(orthanc_.calls));
}


TEST_F(ChangeFollowerTest, CachedInstanceNeedsNoLookup)
{
  DicomFileBuilder builder("1.2.840.10008.1.2.1");
  builder.Add(0x0008, 0x0018, "UI", "1.2.7.1")
      .Add(0x0010, 0x0020, "LO", "PAT")
      .Add(0x0020, 0x000D, "UI", "1.2.7")
      .Add(0x0020, 0x000E, "UI", "1.2.7.0");
  const std::string file = builder.GetFile();
  const std::string cachedId = ComputeOrthancId("PAT|1.2.7|1.2.7.0|1.2.7.1");

  StoredInstanceCache cache;
  ChangeFollower follower(orthanc_, *outbox_, logger_);
  follower.SetStoredInstanceCache(&cache);
  follower.Poll();

  orthanc_.StoreInstance(cachedId);
  ASSERT_TRUE(cache.Note(cachedId, file.data(), file.size()));
  orthanc_.StoreInstance("i2");  // not in the cache: read from Orthanc
  orthanc_.calls.clear();
  EXPECT_EQ(2u, follower.Poll());

  EXPECT_EQ(0, std::count(orthanc_.calls.begin(), orthanc_.calls.end(), "/instances/" + cachedId));
  EXPECT_EQ(1, std::count(orthanc_.calls.begin(), orthanc_.calls.end(), "/instances/i2"));
  EXPECT_EQ(0u, cache.GetSize());

  OutboxItem item;
  ASSERT_TRUE(outbox_->FindItem(item, cachedId));
  EXPECT_EQ("1.2.7.1", item.instance.sopInstanceUid);
  EXPECT_EQ("1.2.7.0", item.instance.seriesInstanceUid);
  EXPECT_EQ("1.2.7", item.instance.studyInstanceUid);
  EXPECT_EQ(ComputeOrthancId("PAT|1.2.7"), item.instance.orthancStudyId);
  EXPECT_EQ(file.size(), item.instance.size);
  ASSERT_TRUE(outbox_->FindItem(item, "i2"));
  EXPECT_EQ("1.2.2", item.instance.sopInstanceUid);
}
