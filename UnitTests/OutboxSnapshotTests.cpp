#include "Common/Exception.h"
#include "Sync/Outbox.h"

#include "OutboxBackends.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

using namespace AzureDicom;

namespace
{
const int64_t NOW = 1700000000000;
const int64_t LEASE_MS = 60000;
const uint64_t NO_BYTE_LIMIT = 1ull << 40;  // 1 TiB, more than any test queues

// Hex MD5 digests of two different contents ("a" and "b"), as the dispatcher records them.
const char* const MD5_FIRST = "0cc175b9c0f1b6a831c399e269772661";
const char* const MD5_SECOND = "92eb5ffee6ae2fec3ad71c777531578f";

const Destination DESTINATION_A{"https://a.example.com", "v2", "p1"};
const Destination DESTINATION_B{"https://b.example.com", "v1", ""};

// The outbox schema of version 1 (PRAGMA user_version = 1), which plugin versions without
// snapshots created.
const char* const SCHEMA_V1_SQL = R"sql(
PRAGMA journal_mode = WAL;

CREATE TABLE properties (
  name TEXT PRIMARY KEY NOT NULL,
  value NOT NULL
);

CREATE TABLE items (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  orthanc_id TEXT NOT NULL UNIQUE,
  sop_instance_uid TEXT NOT NULL,
  series_instance_uid TEXT NOT NULL,
  study_instance_uid TEXT NOT NULL,
  orthanc_study_id TEXT NOT NULL,
  size INTEGER NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  status_code INTEGER NOT NULL DEFAULT 0,
  failure_reason INTEGER NOT NULL DEFAULT 0,
  warning_reason INTEGER NOT NULL DEFAULT 0,
  message TEXT NOT NULL DEFAULT '',
  destination TEXT NOT NULL DEFAULT '',
  queued_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  lease_until INTEGER NOT NULL DEFAULT 0,
  sent_at INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX items_claim ON items (state, next_attempt_at, id);
CREATE INDEX items_state_id ON items (state, id);
CREATE INDEX items_state_queued ON items (state, queued_at);
CREATE INDEX items_sop_instance_uid ON items (sop_instance_uid);
CREATE INDEX items_orthanc_study_id ON items (orthanc_study_id);
CREATE INDEX items_study_instance_uid ON items (study_instance_uid);

PRAGMA user_version = 1;
)sql";


NewInstance MakeInstance(int number, uint64_t size = 1000, const std::string& contentMd5 = "")
{
  NewInstance instance;
  instance.orthancId = "orthanc-" + std::to_string(number);
  instance.sopInstanceUid = "1.2.826.0.1.3680043.10.1." + std::to_string(number);
  instance.seriesInstanceUid = "1.2.826.0.1.3680043.10.2.A";
  instance.studyInstanceUid = "1.2.826.0.1.3680043.10.3.A";
  instance.orthancStudyId = "study-A";
  instance.size = size;
  instance.contentMd5 = contentMd5;
  return instance;
}


std::vector<int64_t> GetIds(const std::vector<OutboxItem>& items)
{
  std::vector<int64_t> ids;
  for (const OutboxItem& item : items)
  {
    ids.push_back(item.id);
  }
  return ids;
}


ItemOutcome MakeOutcome(int64_t id, ItemState state, const Destination& sentTo,
                        const std::string& contentMd5 = MD5_FIRST)
{
  ItemOutcome outcome;
  outcome.id = id;
  outcome.state = state;
  outcome.statusCode = 200;
  outcome.destination = sentTo.GetDicomWebBase() + "/studies";
  outcome.sentTo = sentTo;
  outcome.contentMd5 = contentMd5;
  return outcome;
}


OutboxItem GetItem(Outbox& outbox, const std::string& orthancId)
{
  OutboxItem item;
  EXPECT_TRUE(outbox.FindItem(item, orthancId)) << orthancId;
  return item;
}


bool HasItem(Outbox& outbox, const std::string& orthancId)
{
  OutboxItem item;
  return outbox.FindItem(item, orthancId);
}


// Runs SQL on a connection of its own, as the plugin version that wrote the file would.
void ExecuteDirectly(const std::string& path, const std::string& sql)
{
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr),
            SQLITE_OK);
  char* error = nullptr;
  const int code = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  const std::string message = (error != nullptr ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
  ASSERT_EQ(code, SQLITE_OK) << message;
}


std::string QueryTextDirectly(const std::string& path, const std::string& sql)
{
  sqlite3* db = nullptr;
  std::string result;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK)
  {
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &statement, nullptr) == SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW)
    {
      result = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    }
    sqlite3_finalize(statement);
  }
  sqlite3_close(db);
  return result;
}
}  // namespace


class OutboxSnapshotTest : public ::testing::Test
{
protected:
  void SetUp() override
  {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "outbox-snapshot-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    directory_ = pattern;
    path_ = directory_ + "/outbox.db";
  }

  void TearDown() override
  {
    std::filesystem::remove_all(directory_);
  }

  // Queues the instances and claims them all, so that they are Sending.
  std::vector<OutboxItem> QueueAndClaim(Outbox& outbox, const std::vector<NewInstance>& instances,
                                        int64_t now = NOW)
  {
    outbox.Queue(instances, QueueMode::InsertMissing, now);
    return ClaimAll(outbox, instances.size(), now);
  }

  std::vector<OutboxItem> ClaimAll(Outbox& outbox, size_t count, int64_t now = NOW)
  {
    std::vector<OutboxItem> claimed = outbox.ClaimBatch(count, NO_BYTE_LIMIT, now, now + LEASE_MS);
    if (claimed.size() != count)
    {
      // Thrown rather than asserted, so that the calling test stops before it indexes the result.
      throw std::logic_error("claimed " + std::to_string(claimed.size()) + " items, expected " +
                             std::to_string(count));
    }
    return claimed;
  }

  // Queues the instances, sends them and records each with the state at the destination.
  void Confirm(Outbox& outbox, const std::vector<NewInstance>& instances, ItemState state,
               const Destination& sentTo, int64_t now = NOW)
  {
    std::vector<ItemOutcome> outcomes;
    for (const OutboxItem& item : QueueAndClaim(outbox, instances, now))
    {
      outcomes.push_back(MakeOutcome(item.id, state, sentTo));
    }
    outbox.RecordOutcomes(outcomes, now);
  }

  SnapshotRecord TakeSnapshot(Outbox& outbox, int64_t now = NOW, const std::string& label = "")
  {
    SnapshotRecord snapshot;
    snapshot.label = label;
    snapshot.reason = "Manual";
    snapshot.createdAt = now;
    snapshot.settings = "{\"Partition\": \"p1\"}";
    outbox.InsertSnapshot(snapshot);
    return snapshot;
  }

  // Takes a snapshot, then creates two copies at destination A, one at destination B, and finds
  // one already present: instances 1 to 4, of 100, 200, 300 and 400 bytes.
  SnapshotRecord PrepareRollback(Outbox& outbox)
  {
    const SnapshotRecord snapshot = TakeSnapshot(outbox);
    Confirm(outbox, {MakeInstance(1, 100), MakeInstance(2, 200)}, ItemState::Mirrored,
            DESTINATION_A, NOW + 1000);
    Confirm(outbox, {MakeInstance(3, 300)}, ItemState::Mirrored, DESTINATION_B, NOW + 1000);
    Confirm(outbox, {MakeInstance(4, 400)}, ItemState::AlreadyPresent, DESTINATION_A, NOW + 1000);
    return snapshot;
  }

  std::string directory_;
  std::string path_;
};


// The tests of OutboxSnapshotTest that hold for both databases, once for each.
class OutboxSnapshotBackendTest : public OutboxSnapshotTest, public ::testing::WithParamInterface<OutboxBackend>
{
protected:
  void SetUp() override
  {
    OutboxSnapshotTest::SetUp();
    if (GetParam() == OutboxBackend::PostgreSql)
    {
      path_ = PrepareTestPostgreSql();
      ASSERT_FALSE(path_.empty());
    }
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, OutboxSnapshotBackendTest,
                         ::testing::Values(OutboxBackend::Sqlite, OutboxBackend::PostgreSql),
                         GetBackendName);


TEST_P(OutboxSnapshotBackendTest, EmptyOutboxSnapshot)
{
  Outbox outbox(path_);

  const SnapshotRecord snapshot = TakeSnapshot(outbox, NOW, "first");

  EXPECT_EQ(snapshot.id, 1);
  EXPECT_EQ(snapshot.lastCreated, 0);
  EXPECT_EQ(snapshot.lastQueued, 0);
  for (unsigned int i = 0; i < ITEM_STATE_COUNT; i++)
  {
    EXPECT_EQ(snapshot.counts.counts[i], 0u) << ToString(static_cast<ItemState>(i));
  }
}


TEST_P(OutboxSnapshotBackendTest, SnapshotRecordsPositionAndCounts)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1), MakeInstance(2)}, ItemState::Mirrored, DESTINATION_A);
  Confirm(outbox, {MakeInstance(3)}, ItemState::AlreadyPresent, DESTINATION_A);
  outbox.Queue({MakeInstance(4), MakeInstance(5)}, QueueMode::InsertMissing, NOW);
  ClaimAll(outbox, 1);

  const SnapshotRecord snapshot = TakeSnapshot(outbox);

  // Only Mirrored outcomes are creations, so the AlreadyPresent item takes no position.
  EXPECT_EQ(snapshot.lastCreated, 2);
  EXPECT_EQ(snapshot.lastQueued, 5);
  EXPECT_EQ(snapshot.counts.Get(ItemState::Mirrored), 2u);
  EXPECT_EQ(snapshot.counts.Get(ItemState::AlreadyPresent), 1u);
  EXPECT_EQ(snapshot.counts.Get(ItemState::Sending), 1u);
  EXPECT_EQ(snapshot.counts.Get(ItemState::Pending), 1u);
  EXPECT_EQ(snapshot.counts.Get(ItemState::Failed), 0u);
}


TEST_F(OutboxSnapshotTest, LastQueuedIsHighestId)
{
  Outbox outbox(path_);
  outbox.Queue({MakeInstance(1), MakeInstance(2), MakeInstance(3)}, QueueMode::InsertMissing, NOW);
  ExecuteDirectly(path_, "DELETE FROM items WHERE orthanc_id = 'orthanc-1'");

  EXPECT_EQ(TakeSnapshot(outbox).lastQueued, 3);
}


TEST_P(OutboxSnapshotBackendTest, GetSnapshotReadsBack)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);

  SnapshotRecord written;
  written.label = "before the partition move";
  written.reason = "SettingsChange";
  written.createdAt = NOW + 5;
  written.settings = "{\"Partition\": \"p1\", \"Workers\": 4}";
  written.paused = true;
  outbox.InsertSnapshot(written);

  SnapshotRecord read;
  ASSERT_TRUE(outbox.GetSnapshot(read, written.id));
  EXPECT_EQ(read.id, written.id);
  EXPECT_EQ(read.label, "before the partition move");
  EXPECT_EQ(read.reason, "SettingsChange");
  EXPECT_EQ(read.createdAt, NOW + 5);
  EXPECT_EQ(read.settings, written.settings);
  EXPECT_TRUE(read.paused);
  EXPECT_EQ(read.lastCreated, 1);
  EXPECT_EQ(read.lastQueued, 1);
  EXPECT_EQ(read.counts.Get(ItemState::Mirrored), 1u);
  EXPECT_EQ(read.counts.Get(ItemState::Pending), 0u);

  SnapshotRecord missing;
  EXPECT_FALSE(outbox.GetSnapshot(missing, written.id + 1));
}


TEST_P(OutboxSnapshotBackendTest, ListSnapshotsInIdOrder)
{
  Outbox outbox(path_);
  EXPECT_TRUE(outbox.ListSnapshots().empty());

  TakeSnapshot(outbox, NOW, "one");
  outbox.Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW);
  TakeSnapshot(outbox, NOW + 1, "two");
  TakeSnapshot(outbox, NOW + 2, "three");

  const std::vector<SnapshotRecord> snapshots = outbox.ListSnapshots();
  ASSERT_EQ(snapshots.size(), 3u);
  EXPECT_EQ(snapshots[0].id, 1);
  EXPECT_EQ(snapshots[0].label, "one");
  EXPECT_EQ(snapshots[0].lastQueued, 0);
  EXPECT_EQ(snapshots[1].id, 2);
  EXPECT_EQ(snapshots[1].label, "two");
  EXPECT_EQ(snapshots[1].lastQueued, 1);
  EXPECT_EQ(snapshots[2].id, 3);
  EXPECT_EQ(snapshots[2].createdAt, NOW + 2);
}


TEST_P(OutboxSnapshotBackendTest, SnapshotsSurviveReopen)
{
  {
    Outbox outbox(path_);
    TakeSnapshot(outbox, NOW, "kept");
  }

  Outbox reopened(path_);
  SnapshotRecord snapshot;
  ASSERT_TRUE(reopened.GetSnapshot(snapshot, 1));
  EXPECT_EQ(snapshot.label, "kept");
}


TEST_P(OutboxSnapshotBackendTest, PlanListsCreatedAfterSnapshot)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(9, 900)}, ItemState::Mirrored, DESTINATION_A);
  const SnapshotRecord snapshot = PrepareRollback(outbox);

  const RollbackPlan plan = outbox.PlanRollback(snapshot, 20);

  EXPECT_EQ(plan.instances, 3u);
  EXPECT_EQ(plan.bytes, 600u);
  ASSERT_EQ(plan.destinations.size(), 2u);
  EXPECT_EQ(plan.destinations[0].destination, DESTINATION_A);
  EXPECT_EQ(plan.destinations[0].instances, 2u);
  EXPECT_EQ(plan.destinations[0].bytes, 300u);
  EXPECT_EQ(plan.destinations[1].destination, DESTINATION_B);
  EXPECT_EQ(plan.destinations[1].instances, 1u);
  EXPECT_EQ(plan.destinations[1].bytes, 300u);

  const std::vector<int64_t> expectedIds = {GetItem(outbox, "orthanc-1").id,
                                            GetItem(outbox, "orthanc-2").id,
                                            GetItem(outbox, "orthanc-3").id};
  EXPECT_EQ(GetIds(plan.firstItems), expectedIds);
  EXPECT_EQ(plan.alreadyPresentKept, 1u);
  EXPECT_EQ(plan.droppedPending, 0u);
  EXPECT_TRUE(plan.firstDropped.empty());
}


TEST_P(OutboxSnapshotBackendTest, PlanLimitsFirstItems)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  outbox.Queue({MakeInstance(5), MakeInstance(6)}, QueueMode::InsertMissing, NOW + 2000);

  const RollbackPlan plan = outbox.PlanRollback(snapshot, 1);

  EXPECT_EQ(plan.instances, 3u);
  ASSERT_EQ(plan.firstItems.size(), 1u);
  EXPECT_EQ(plan.firstItems[0].instance.orthancId, "orthanc-1");
  EXPECT_EQ(plan.droppedPending, 2u);
  ASSERT_EQ(plan.firstDropped.size(), 1u);
  EXPECT_EQ(plan.firstDropped[0].instance.orthancId, "orthanc-5");
}


TEST_P(OutboxSnapshotBackendTest, PlanOfLatestSnapshotIsEmpty)
{
  Outbox outbox(path_);
  PrepareRollback(outbox);
  const SnapshotRecord latest = TakeSnapshot(outbox, NOW + 5000);

  const RollbackPlan plan = outbox.PlanRollback(latest, 20);

  EXPECT_EQ(plan.instances, 0u);
  EXPECT_EQ(plan.bytes, 0u);
  EXPECT_TRUE(plan.destinations.empty());
  EXPECT_TRUE(plan.firstItems.empty());
  EXPECT_EQ(plan.droppedPending, 0u);
  EXPECT_EQ(plan.alreadyPresentKept, 0u);
}


TEST_P(OutboxSnapshotBackendTest, PlanDropsPendingQueuedAfter)
{
  Outbox outbox(path_);
  outbox.Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW);
  const SnapshotRecord snapshot = TakeSnapshot(outbox);
  outbox.Queue({MakeInstance(2), MakeInstance(3), MakeInstance(4)}, QueueMode::InsertMissing,
               NOW + 1000);
  // Claims orthanc-1 and orthanc-2: Sending items are in flight, never dropped.
  ClaimAll(outbox, 2, NOW + 1000);
  outbox.Queue({MakeInstance(5)}, QueueMode::InsertMissing, NOW + 1000);
  const std::vector<OutboxItem> claimed = ClaimAll(outbox, 1, NOW + 1000);
  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Failed, DESTINATION_A)}, NOW + 1000);

  const RollbackPlan plan = outbox.PlanRollback(snapshot, 20);

  // The Failed orthanc-3 is not pending.
  EXPECT_EQ(plan.droppedPending, 2u);
  std::vector<std::string> dropped;
  for (const OutboxItem& item : plan.firstDropped)
  {
    dropped.push_back(item.instance.orthancId);
  }
  EXPECT_EQ(dropped, (std::vector<std::string>{"orthanc-4", "orthanc-5"}));
  EXPECT_EQ(plan.instances, 0u);
}


TEST_P(OutboxSnapshotBackendTest, PlanListsInFlightApart)
{
  Outbox outbox(path_);
  outbox.Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW);
  const SnapshotRecord snapshot = TakeSnapshot(outbox);
  outbox.Queue({MakeInstance(2), MakeInstance(3)}, QueueMode::InsertMissing, NOW + 1000);
  // orthanc-1, queued before the snapshot, is in flight too: a confirmation creates it after.
  ClaimAll(outbox, 2, NOW + 1000);

  const RollbackPlan plan = outbox.PlanRollback(snapshot, 20);

  EXPECT_EQ(plan.inFlight, 2u);
  std::vector<std::string> inFlight;
  for (const OutboxItem& item : plan.firstInFlight)
  {
    inFlight.push_back(item.instance.orthancId);
  }
  EXPECT_EQ(inFlight, (std::vector<std::string>{"orthanc-1", "orthanc-2"}));
  EXPECT_EQ(plan.droppedPending, 1u);
}


TEST_P(OutboxSnapshotBackendTest, RollbackLeavesInFlightAlone)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = TakeSnapshot(outbox);
  outbox.Queue({MakeInstance(1), MakeInstance(2)}, QueueMode::InsertMissing, NOW + 1000);
  ClaimAll(outbox, 1, NOW + 1000);

  outbox.StartRollback(snapshot, 0, true, NOW + 2000);

  EXPECT_EQ(GetItem(outbox, "orthanc-1").state, ItemState::Sending);
  EXPECT_EQ(GetItem(outbox, "orthanc-2").state, ItemState::Skipped);
}


TEST_P(OutboxSnapshotBackendTest, StartRollbackPlanMatchesMarks)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  outbox.Queue({MakeInstance(5), MakeInstance(6)}, QueueMode::InsertMissing, NOW + 2000);
  ClaimAll(outbox, 1, NOW + 2000);

  RollbackPlan plan;
  const int64_t rollbackId = outbox.StartRollback(snapshot, 0, true, NOW + 3000, &plan, 1);

  RollbackRecord rollback;
  ASSERT_TRUE(outbox.GetRollback(rollback, rollbackId));
  EXPECT_EQ(plan.instances, rollback.total);
  EXPECT_EQ(plan.firstItems.size(), 1u);
  EXPECT_EQ(plan.droppedPending, outbox.CountByState().Get(ItemState::Skipped));
  EXPECT_EQ(plan.inFlight, 1u);
}


TEST_P(OutboxSnapshotBackendTest, PlanWithoutDeleteIsEmpty)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  outbox.Queue({MakeInstance(5), MakeInstance(6)}, QueueMode::InsertMissing, NOW + 2000);
  ClaimAll(outbox, 1, NOW + 2000);

  const RollbackPlan plan = outbox.PlanRollback(snapshot, 20, false);

  EXPECT_EQ(plan.instances, 0u);
  EXPECT_TRUE(plan.firstItems.empty());
  EXPECT_EQ(plan.droppedPending, 0u);
  EXPECT_EQ(plan.inFlight, 0u);
  EXPECT_EQ(plan.alreadyPresentKept, 1u);
}


TEST_P(OutboxSnapshotBackendTest, PlanKeepsAlreadyPresent)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = TakeSnapshot(outbox);
  Confirm(outbox, {MakeInstance(1), MakeInstance(2)}, ItemState::AlreadyPresent, DESTINATION_B,
          NOW + 1000);

  const RollbackPlan plan = outbox.PlanRollback(snapshot, 20);

  EXPECT_EQ(plan.instances, 0u);
  EXPECT_TRUE(plan.firstItems.empty());
  EXPECT_EQ(plan.alreadyPresentKept, 2u);
}


TEST_P(OutboxSnapshotBackendTest, StartRollbackMarksPlan)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  outbox.Queue({MakeInstance(5)}, QueueMode::InsertMissing, NOW + 2000);
  const SnapshotRecord safety = TakeSnapshot(outbox, NOW + 3000);

  const int64_t rollbackId = outbox.StartRollback(snapshot, safety.id, true, NOW + 4000);

  EXPECT_GT(rollbackId, 0);
  for (const char* orthancId : {"orthanc-1", "orthanc-2", "orthanc-3"})
  {
    const OutboxItem item = GetItem(outbox, orthancId);
    EXPECT_EQ(item.rollbackId, rollbackId) << orthancId;
    EXPECT_EQ(item.state, ItemState::Mirrored) << orthancId;
  }
  EXPECT_EQ(GetItem(outbox, "orthanc-4").rollbackId, 0);

  const OutboxItem dropped = GetItem(outbox, "orthanc-5");
  EXPECT_EQ(dropped.state, ItemState::Skipped);
  EXPECT_NE(dropped.message.find("rollback"), std::string::npos) << dropped.message;
  EXPECT_EQ(dropped.updatedAt, NOW + 4000);

  RollbackRecord rollback;
  ASSERT_TRUE(outbox.GetRollback(rollback, rollbackId));
  EXPECT_EQ(rollback.id, rollbackId);
  EXPECT_EQ(rollback.snapshotId, snapshot.id);
  EXPECT_EQ(rollback.safetySnapshotId, safety.id);
  EXPECT_EQ(rollback.state, RollbackState::Running);
  EXPECT_EQ(rollback.total, 3u);
  EXPECT_EQ(rollback.deleted, 0u);
  EXPECT_EQ(rollback.GetRemaining(), 3u);
  EXPECT_EQ(rollback.createdAt, NOW + 4000);

  const std::vector<OutboxItem> items = outbox.ListRollbackItems(rollbackId, 10);
  std::vector<std::string> listed;
  for (const OutboxItem& item : items)
  {
    listed.push_back(item.instance.orthancId);
  }
  EXPECT_EQ(listed, (std::vector<std::string>{"orthanc-1", "orthanc-2", "orthanc-3"}));
  EXPECT_EQ(outbox.ListRollbackItems(rollbackId, 2).size(), 2u);

  EXPECT_EQ(outbox.ListRunningRollbacks(), std::vector<int64_t>{rollbackId});
  RollbackRecord last;
  ASSERT_TRUE(outbox.GetLastRollback(last));
  EXPECT_EQ(last.id, rollbackId);
}


TEST_P(OutboxSnapshotBackendTest, MarkedItemsLeaveLaterPlans)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  outbox.StartRollback(snapshot, 0, true, NOW + 2000);

  const RollbackPlan plan = outbox.PlanRollback(snapshot, 20);

  EXPECT_EQ(plan.instances, 0u);
  EXPECT_TRUE(plan.firstItems.empty());
}


TEST_P(OutboxSnapshotBackendTest, CheckFindsRunningRollback)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  outbox.CheckNoRunningRollback();
  const int64_t rollbackId = outbox.StartRollback(snapshot, 0, true, NOW + 2000);

  try
  {
    outbox.CheckNoRunningRollback();
    FAIL() << "no conflict while rollback " << rollbackId << " runs";
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(e.GetCode(), ErrorCode::Conflict);
  }

  outbox.FinishRollback(rollbackId, RollbackState::Success, "", NOW + 3000);
  outbox.CheckNoRunningRollback();
}


TEST_P(OutboxSnapshotBackendTest, SecondRollbackConflicts)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  const int64_t first = outbox.StartRollback(snapshot, 0, true, NOW + 2000);

  try
  {
    outbox.StartRollback(snapshot, 0, true, NOW + 3000);
    FAIL() << "a second rollback started while the first runs";
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(e.GetCode(), ErrorCode::Conflict);
  }
  EXPECT_EQ(outbox.ListRunningRollbacks(), std::vector<int64_t>{first});

  outbox.FinishRollback(first, RollbackState::Success, "", NOW + 4000);
  const int64_t second = outbox.StartRollback(snapshot, 0, true, NOW + 5000);
  EXPECT_GT(second, first);
  EXPECT_EQ(outbox.ListRunningRollbacks(), std::vector<int64_t>{second});
}


TEST_P(OutboxSnapshotBackendTest, RollbackWithoutDeleteMarksNothing)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);

  const int64_t rollbackId = outbox.StartRollback(snapshot, 0, false, NOW + 2000);

  RollbackRecord rollback;
  ASSERT_TRUE(outbox.GetRollback(rollback, rollbackId));
  EXPECT_EQ(rollback.total, 0u);
  EXPECT_EQ(rollback.GetRemaining(), 0u);
  EXPECT_TRUE(outbox.ListRollbackItems(rollbackId, 10).empty());
  for (const char* orthancId : {"orthanc-1", "orthanc-2", "orthanc-3"})
  {
    EXPECT_EQ(GetItem(outbox, orthancId).rollbackId, 0) << orthancId;
  }
  EXPECT_EQ(outbox.PlanRollback(snapshot, 20).instances, 3u);
}


TEST_P(OutboxSnapshotBackendTest, RemovalOutcomesAreCounted)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  const int64_t rollbackId = outbox.StartRollback(snapshot, 0, true, NOW + 2000);
  const int64_t deletedId = GetItem(outbox, "orthanc-1").id;
  const int64_t notFoundId = GetItem(outbox, "orthanc-2").id;
  const int64_t failedId = GetItem(outbox, "orthanc-3").id;

  outbox.RecordRemoval(rollbackId, deletedId, RemovalOutcome::Deleted, "HTTP 204", NOW + 3000);
  outbox.RecordRemoval(rollbackId, notFoundId, RemovalOutcome::NotFound, "HTTP 404", NOW + 3000);
  outbox.RecordRemoval(rollbackId, failedId, RemovalOutcome::Failed, "HTTP 400: invalid",
                       NOW + 3000);

  const OutboxItem deleted = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(deleted.state, ItemState::RolledBack);
  EXPECT_EQ(deleted.createdSequence, 0);
  EXPECT_EQ(deleted.message, "HTTP 204");
  EXPECT_EQ(deleted.updatedAt, NOW + 3000);
  EXPECT_EQ(GetItem(outbox, "orthanc-2").state, ItemState::RolledBack);

  const OutboxItem failed = GetItem(outbox, "orthanc-3");
  EXPECT_EQ(failed.state, ItemState::Mirrored);
  EXPECT_EQ(failed.rollbackId, 0);
  EXPECT_GT(failed.createdSequence, 0);
  EXPECT_EQ(failed.message, "HTTP 400: invalid");

  RollbackRecord rollback;
  ASSERT_TRUE(outbox.GetRollback(rollback, rollbackId));
  EXPECT_EQ(rollback.deleted, 1u);
  EXPECT_EQ(rollback.notFound, 1u);
  EXPECT_EQ(rollback.failed, 1u);
  EXPECT_EQ(rollback.GetRemaining(), 0u);
  EXPECT_EQ(rollback.updatedAt, NOW + 3000);
  EXPECT_TRUE(outbox.ListRollbackItems(rollbackId, 10).empty());
}


TEST_P(OutboxSnapshotBackendTest, RemovalRecordedTwiceCountsOnce)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  const int64_t rollbackId = outbox.StartRollback(snapshot, 0, true, NOW + 2000);
  const int64_t firstId = GetItem(outbox, "orthanc-1").id;
  const int64_t thirdId = GetItem(outbox, "orthanc-3").id;

  outbox.RecordRemoval(rollbackId, firstId, RemovalOutcome::Deleted, "HTTP 204", NOW + 3000);
  outbox.RecordRemoval(rollbackId, firstId, RemovalOutcome::Deleted, "HTTP 204", NOW + 3001);
  outbox.RecordRemoval(rollbackId, firstId, RemovalOutcome::NotFound, "HTTP 404", NOW + 3002);
  outbox.RecordRemoval(rollbackId, thirdId, RemovalOutcome::Failed, "HTTP 400", NOW + 3003);
  outbox.RecordRemoval(rollbackId, thirdId, RemovalOutcome::Failed, "HTTP 400", NOW + 3004);

  RollbackRecord rollback;
  ASSERT_TRUE(outbox.GetRollback(rollback, rollbackId));
  EXPECT_EQ(rollback.deleted, 1u);
  EXPECT_EQ(rollback.notFound, 0u);
  EXPECT_EQ(rollback.failed, 1u);
  EXPECT_EQ(rollback.GetRemaining(), 1u);
}


TEST_P(OutboxSnapshotBackendTest, RemovalOfOtherRollbackIsIgnored)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  const int64_t rollbackId = outbox.StartRollback(snapshot, 0, true, NOW + 2000);
  const int64_t itemId = GetItem(outbox, "orthanc-1").id;
  const int64_t alreadyPresentId = GetItem(outbox, "orthanc-4").id;

  outbox.RecordRemoval(rollbackId + 1, itemId, RemovalOutcome::Deleted, "HTTP 204", NOW + 3000);
  outbox.RecordRemoval(rollbackId, alreadyPresentId, RemovalOutcome::Deleted, "HTTP 204",
                       NOW + 3000);

  EXPECT_EQ(GetItem(outbox, "orthanc-1").state, ItemState::Mirrored);
  EXPECT_EQ(GetItem(outbox, "orthanc-4").state, ItemState::AlreadyPresent);
  RollbackRecord rollback;
  ASSERT_TRUE(outbox.GetRollback(rollback, rollbackId));
  EXPECT_EQ(rollback.deleted, 0u);
  EXPECT_EQ(rollback.GetRemaining(), 3u);
}


TEST_P(OutboxSnapshotBackendTest, CanceledRollbackFreesItems)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  const int64_t rollbackId = outbox.StartRollback(snapshot, 0, true, NOW + 2000);
  outbox.RecordRemoval(rollbackId, GetItem(outbox, "orthanc-1").id, RemovalOutcome::Deleted,
                       "HTTP 204", NOW + 3000);

  outbox.FinishRollback(rollbackId, RollbackState::Canceled, "canceled by an administrator",
                        NOW + 4000);

  RollbackRecord rollback;
  ASSERT_TRUE(outbox.GetRollback(rollback, rollbackId));
  EXPECT_EQ(rollback.state, RollbackState::Canceled);
  EXPECT_EQ(rollback.message, "canceled by an administrator");
  EXPECT_EQ(rollback.deleted, 1u);
  EXPECT_EQ(rollback.updatedAt, NOW + 4000);
  EXPECT_TRUE(outbox.ListRunningRollbacks().empty());
  EXPECT_TRUE(outbox.ListRollbackItems(rollbackId, 10).empty());

  EXPECT_EQ(GetItem(outbox, "orthanc-1").state, ItemState::RolledBack);
  for (const char* orthancId : {"orthanc-2", "orthanc-3"})
  {
    const OutboxItem item = GetItem(outbox, orthancId);
    EXPECT_EQ(item.state, ItemState::Mirrored) << orthancId;
    EXPECT_EQ(item.rollbackId, 0) << orthancId;
  }
  EXPECT_EQ(outbox.PlanRollback(snapshot, 20).instances, 2u);
}


TEST_P(OutboxSnapshotBackendTest, FinishedRollbackStaysFinished)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  const int64_t rollbackId = outbox.StartRollback(snapshot, 0, true, NOW + 2000);
  outbox.SetRollbackJob(rollbackId, "5f1e2d3c-job");

  outbox.FinishRollback(rollbackId, RollbackState::Failure, "3 deletions failed", NOW + 3000);
  outbox.FinishRollback(rollbackId, RollbackState::Success, "", NOW + 4000);

  RollbackRecord rollback;
  ASSERT_TRUE(outbox.GetLastRollback(rollback));
  EXPECT_EQ(rollback.id, rollbackId);
  EXPECT_EQ(rollback.state, RollbackState::Failure);
  EXPECT_EQ(rollback.message, "3 deletions failed");
  EXPECT_EQ(rollback.jobId, "5f1e2d3c-job");
  EXPECT_EQ(rollback.updatedAt, NOW + 3000);
}


TEST_P(OutboxSnapshotBackendTest, NoRollbackYet)
{
  Outbox outbox(path_);

  RollbackRecord rollback;
  EXPECT_FALSE(outbox.GetLastRollback(rollback));
  EXPECT_FALSE(outbox.GetRollback(rollback, 1));
  EXPECT_TRUE(outbox.ListRunningRollbacks().empty());
}


TEST_P(OutboxSnapshotBackendTest, RollbackStateNames)
{
  EXPECT_STREQ(ToString(RollbackState::Running), "Running");
  EXPECT_STREQ(ToString(RollbackState::Success), "Success");
  EXPECT_STREQ(ToString(RollbackState::Failure), "Failure");
  EXPECT_STREQ(ToString(RollbackState::Canceled), "Canceled");
}


TEST_P(OutboxSnapshotBackendTest, RunningRollbackSurvivesReopen)
{
  int64_t rollbackId = 0;
  {
    Outbox outbox(path_);
    const SnapshotRecord snapshot = PrepareRollback(outbox);
    rollbackId = outbox.StartRollback(snapshot, 0, true, NOW + 2000);
  }

  Outbox reopened(path_);
  EXPECT_EQ(reopened.ListRunningRollbacks(), std::vector<int64_t>{rollbackId});
  EXPECT_EQ(reopened.ListRollbackItems(rollbackId, 10).size(), 3u);
}


TEST_P(OutboxSnapshotBackendTest, OutcomesRecordConfirmation)
{
  Outbox outbox(path_);
  const std::vector<OutboxItem> claimed =
      QueueAndClaim(outbox, {MakeInstance(1), MakeInstance(2), MakeInstance(3)});

  ItemOutcome conflict =
      MakeOutcome(claimed[1].id, ItemState::AlreadyPresent, DESTINATION_B, MD5_SECOND);
  conflict.contentConflict = true;
  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Mirrored, DESTINATION_A), conflict,
                         MakeOutcome(claimed[2].id, ItemState::Mirrored, DESTINATION_A)},
                        NOW + 10);

  const OutboxItem mirrored = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(mirrored.state, ItemState::Mirrored);
  EXPECT_EQ(mirrored.sentTo, DESTINATION_A);
  EXPECT_EQ(mirrored.contentMd5, MD5_FIRST);
  EXPECT_FALSE(mirrored.contentConflict);
  EXPECT_EQ(mirrored.createdSequence, 1);
  EXPECT_EQ(mirrored.sentAt, NOW + 10);
  EXPECT_EQ(mirrored.destination, "https://a.example.com/v2/partitions/p1/studies");

  const OutboxItem present = GetItem(outbox, "orthanc-2");
  EXPECT_EQ(present.state, ItemState::AlreadyPresent);
  EXPECT_EQ(present.sentTo, DESTINATION_B);
  EXPECT_EQ(present.contentMd5, MD5_SECOND);
  EXPECT_TRUE(present.contentConflict);
  EXPECT_EQ(present.createdSequence, 0);

  EXPECT_EQ(GetItem(outbox, "orthanc-3").createdSequence, 2);
  EXPECT_EQ(outbox.CountConflicts(), 1u);
  EXPECT_EQ(TakeSnapshot(outbox).lastCreated, 2);
}


TEST_P(OutboxSnapshotBackendTest, CreationSequenceGrowsAcrossBatches)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  Confirm(outbox, {MakeInstance(2)}, ItemState::AlreadyPresent, DESTINATION_A);
  Confirm(outbox, {MakeInstance(3)}, ItemState::Mirrored, DESTINATION_B);

  EXPECT_EQ(GetItem(outbox, "orthanc-1").createdSequence, 1);
  EXPECT_EQ(GetItem(outbox, "orthanc-2").createdSequence, 0);
  EXPECT_EQ(GetItem(outbox, "orthanc-3").createdSequence, 2);
}


TEST_P(OutboxSnapshotBackendTest, UnconfirmedOutcomeKeepsDestination)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  outbox.QueueFromChanges({MakeInstance(1, 1000, MD5_SECOND)}, 1, NOW + 1000);
  const std::vector<OutboxItem> claimed = ClaimAll(outbox, 1, NOW + 1000);

  ItemOutcome retry = MakeOutcome(claimed[0].id, ItemState::Pending, DESTINATION_B, MD5_SECOND);
  retry.nextAttemptAt = NOW + 5000;
  outbox.RecordOutcomes({retry}, NOW + 2000);

  const OutboxItem item = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(item.state, ItemState::Pending);
  EXPECT_EQ(item.sentTo, DESTINATION_A);
  EXPECT_EQ(item.createdSequence, 1);
  EXPECT_TRUE(item.contentChanged);
  EXPECT_EQ(item.sentAt, 0);
}


TEST_P(OutboxSnapshotBackendTest, AlreadyPresentAtSameDestinationKeepsCreation)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  outbox.QueueFromChanges({MakeInstance(1, 1000, MD5_SECOND)}, 1, NOW + 1000);
  const std::vector<OutboxItem> claimed = ClaimAll(outbox, 1, NOW + 1000);

  ItemOutcome conflict =
      MakeOutcome(claimed[0].id, ItemState::AlreadyPresent, DESTINATION_A, MD5_SECOND);
  conflict.contentConflict = true;
  outbox.RecordOutcomes({conflict}, NOW + 2000);

  const OutboxItem item = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(item.state, ItemState::AlreadyPresent);
  EXPECT_EQ(item.createdSequence, 1);
  EXPECT_TRUE(item.contentConflict);
  EXPECT_FALSE(item.contentChanged);
  EXPECT_EQ(item.contentMd5, MD5_SECOND);
}


TEST_P(OutboxSnapshotBackendTest, AlreadyPresentElsewhereClearsCreation)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  outbox.QueueFromChanges({MakeInstance(1, 1000, MD5_SECOND)}, 1, NOW + 1000);
  const std::vector<OutboxItem> claimed = ClaimAll(outbox, 1, NOW + 1000);

  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::AlreadyPresent, DESTINATION_B)},
                        NOW + 2000);

  const OutboxItem item = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(item.state, ItemState::AlreadyPresent);
  EXPECT_EQ(item.sentTo, DESTINATION_B);
  EXPECT_EQ(item.createdSequence, 0);
}


TEST_P(OutboxSnapshotBackendTest, ForgetCreationClearsSequence)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  const int64_t id = GetItem(outbox, "orthanc-1").id;

  outbox.ForgetCreation(id, NOW + 1000);

  const OutboxItem item = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(item.createdSequence, 0);
  EXPECT_EQ(item.updatedAt, NOW + 1000);
  EXPECT_FALSE(outbox.RequestDeletion("orthanc-1", NOW + 2000));
}


TEST_P(OutboxSnapshotBackendTest, OtherContentReturnsToPending)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1), MakeInstance(2)}, ItemState::Mirrored, DESTINATION_A);
  ItemOutcome conflict;
  {
    outbox.Queue({MakeInstance(3)}, QueueMode::InsertMissing, NOW);
    const std::vector<OutboxItem> claimed = ClaimAll(outbox, 1);
    conflict = MakeOutcome(claimed[0].id, ItemState::AlreadyPresent, DESTINATION_A);
    conflict.contentConflict = true;
    outbox.RecordOutcomes({conflict}, NOW);
  }
  ASSERT_EQ(outbox.CountConflicts(), 1u);

  const QueueResult result =
      outbox.QueueFromChanges({MakeInstance(1, 2000, MD5_SECOND), MakeInstance(2, 1000, MD5_FIRST),
                               MakeInstance(3, 1000, MD5_SECOND)},
                              7, NOW + 1000);

  EXPECT_EQ(result.requeued, 2u);
  EXPECT_EQ(result.unchanged, 1u);
  EXPECT_EQ(result.inserted, 0u);
  EXPECT_EQ(outbox.GetFollowerSequence(), 7);

  const OutboxItem changed = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(changed.state, ItemState::Pending);
  EXPECT_TRUE(changed.contentChanged);
  EXPECT_EQ(changed.instance.size, 2000u);
  EXPECT_EQ(changed.queuedAt, NOW + 1000);
  EXPECT_EQ(changed.attempts, 0u);
  EXPECT_EQ(changed.sentTo, DESTINATION_A);
  EXPECT_EQ(changed.contentMd5, MD5_FIRST);
  EXPECT_EQ(changed.createdSequence, 1);

  const OutboxItem same = GetItem(outbox, "orthanc-2");
  EXPECT_EQ(same.state, ItemState::Mirrored);
  EXPECT_FALSE(same.contentChanged);

  const OutboxItem requeuedConflict = GetItem(outbox, "orthanc-3");
  EXPECT_EQ(requeuedConflict.state, ItemState::Pending);
  EXPECT_FALSE(requeuedConflict.contentConflict);
  EXPECT_EQ(outbox.CountConflicts(), 0u);
}


TEST_F(OutboxSnapshotTest, DigestIgnoredWithoutRecordedDigest)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  ExecuteDirectly(path_, "UPDATE items SET content_md5 = '' WHERE orthanc_id = 'orthanc-1'");

  const QueueResult result =
      outbox.QueueFromChanges({MakeInstance(1, 1000, MD5_SECOND)}, 2, NOW + 1000);

  EXPECT_EQ(result.unchanged, 1u);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").state, ItemState::Mirrored);
}


TEST_P(OutboxSnapshotBackendTest, ConfirmationClearsContentChanged)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  outbox.QueueFromChanges({MakeInstance(1, 1000, MD5_SECOND)}, 1, NOW + 1000);
  const std::vector<OutboxItem> claimed = ClaimAll(outbox, 1, NOW + 1000);
  ASSERT_TRUE(claimed[0].contentChanged);

  outbox.RecordOutcomes(
      {MakeOutcome(claimed[0].id, ItemState::Mirrored, DESTINATION_A, MD5_SECOND)}, NOW + 2000);

  const OutboxItem item = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(item.state, ItemState::Mirrored);
  EXPECT_FALSE(item.contentChanged);
  EXPECT_EQ(item.contentMd5, MD5_SECOND);
  EXPECT_EQ(item.createdSequence, 2);
}


TEST_P(OutboxSnapshotBackendTest, ConfirmedDigestsOnly)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  {
    outbox.Queue({MakeInstance(2)}, QueueMode::InsertMissing, NOW);
    const std::vector<OutboxItem> claimed = ClaimAll(outbox, 1);
    outbox.RecordOutcomes(
        {MakeOutcome(claimed[0].id, ItemState::AlreadyPresent, DESTINATION_A, MD5_SECOND)}, NOW);
  }
  outbox.Queue({MakeInstance(3)}, QueueMode::InsertMissing, NOW);
  {
    const std::vector<OutboxItem> claimed = ClaimAll(outbox, 1);
    outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Failed, DESTINATION_A)}, NOW);
  }

  const std::map<std::string, std::string> digests =
      outbox.GetConfirmedDigests({"orthanc-1", "orthanc-2", "orthanc-3", "orthanc-9"});

  const std::map<std::string, std::string> expected = {{"orthanc-1", MD5_FIRST},
                                                       {"orthanc-2", MD5_SECOND}};
  EXPECT_EQ(digests, expected);
  EXPECT_TRUE(outbox.GetConfirmedDigests({}).empty());
}


TEST_P(OutboxSnapshotBackendTest, DeletionOnlyOfCreatedCopies)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  Confirm(outbox, {MakeInstance(2)}, ItemState::AlreadyPresent, DESTINATION_A);
  outbox.Queue({MakeInstance(3)}, QueueMode::InsertMissing, NOW);

  EXPECT_TRUE(outbox.RequestDeletion("orthanc-1", NOW + 1000));
  EXPECT_FALSE(outbox.RequestDeletion("orthanc-2", NOW + 1000));
  EXPECT_FALSE(outbox.RequestDeletion("orthanc-3", NOW + 1000));
  EXPECT_FALSE(outbox.RequestDeletion("orthanc-9", NOW + 1000));

  EXPECT_TRUE(GetItem(outbox, "orthanc-1").deleteRequested);
  EXPECT_FALSE(GetItem(outbox, "orthanc-2").deleteRequested);
  EXPECT_EQ(outbox.CountDeletionRequests(), 1u);
  const std::vector<OutboxItem> requests = outbox.ListDeletionRequests(10);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].instance.orthancId, "orthanc-1");
  EXPECT_EQ(requests[0].sentTo, DESTINATION_A);
}


TEST_P(OutboxSnapshotBackendTest, DeletionRequestsAreListedInOrder)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1), MakeInstance(2), MakeInstance(3)}, ItemState::Mirrored,
          DESTINATION_A);
  for (const char* orthancId : {"orthanc-3", "orthanc-1", "orthanc-2"})
  {
    ASSERT_TRUE(outbox.RequestDeletion(orthancId, NOW + 1000)) << orthancId;
  }

  const std::vector<OutboxItem> firstTwo = outbox.ListDeletionRequests(2);

  ASSERT_EQ(firstTwo.size(), 2u);
  EXPECT_EQ(firstTwo[0].instance.orthancId, "orthanc-1");
  EXPECT_EQ(firstTwo[1].instance.orthancId, "orthanc-2");
  EXPECT_EQ(outbox.CountDeletionRequests(), 3u);
}


TEST_P(OutboxSnapshotBackendTest, CompletedDeletionRemovesItem)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1), MakeInstance(2)}, ItemState::Mirrored, DESTINATION_A);
  ASSERT_TRUE(outbox.RequestDeletion("orthanc-1", NOW + 1000));
  const OutboxItem requested = GetItem(outbox, "orthanc-1");
  const OutboxItem notRequested = GetItem(outbox, "orthanc-2");

  EXPECT_TRUE(outbox.CompleteDeletion(requested, NOW + 2000));
  EXPECT_FALSE(outbox.CompleteDeletion(notRequested, NOW + 2000));

  EXPECT_FALSE(HasItem(outbox, "orthanc-1"));
  EXPECT_TRUE(HasItem(outbox, "orthanc-2"));
  EXPECT_EQ(outbox.CountDeletionRequests(), 0u);
}


TEST_P(OutboxSnapshotBackendTest, RepeatedRequestStillRemovesItem)
{
  // Orthanc reports a deletion again (an overwrite, then a delete) while the DELETE runs.
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  ASSERT_TRUE(outbox.RequestDeletion("orthanc-1", NOW + 1000));
  const OutboxItem requested = outbox.ListDeletionRequests(10).at(0);
  ASSERT_TRUE(outbox.RequestDeletion("orthanc-1", NOW + 2000));

  EXPECT_TRUE(outbox.CompleteDeletion(requested, NOW + 3000));
  EXPECT_FALSE(HasItem(outbox, "orthanc-1"));
}


TEST_P(OutboxSnapshotBackendTest, AbandonedDeletionKeepsItem)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  ASSERT_TRUE(outbox.RequestDeletion("orthanc-1", NOW + 1000));
  const OutboxItem requested = GetItem(outbox, "orthanc-1");

  outbox.AbandonDeletion(requested.id, "the service rejected its deletion: HTTP 400", NOW + 2000);

  const OutboxItem item = GetItem(outbox, "orthanc-1");
  EXPECT_FALSE(item.deleteRequested);
  EXPECT_EQ(item.state, ItemState::Mirrored);
  EXPECT_EQ(item.message, "the service rejected its deletion: HTTP 400");
  EXPECT_EQ(item.updatedAt, NOW + 2000);
  EXPECT_TRUE(outbox.ListDeletionRequests(10).empty());

  EXPECT_FALSE(outbox.CompleteDeletion(requested, NOW + 3000));
  EXPECT_TRUE(HasItem(outbox, "orthanc-1"));
}


TEST_P(OutboxSnapshotBackendTest, StoredAgainWaitsForDeletion)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);
  ASSERT_TRUE(outbox.RequestDeletion("orthanc-1", NOW + 1000));
  const OutboxItem requested = outbox.ListDeletionRequests(10).at(0);

  NewInstance storedAgain = MakeInstance(1, 2000, MD5_SECOND);
  storedAgain.fileUuid = "attachment-2";
  outbox.QueueFromChanges({storedAgain}, 3, NOW + 2000);

  // The DELETE of the old copy must come first, so the dispatcher claims nothing yet.
  const OutboxItem waiting = GetItem(outbox, "orthanc-1");
  EXPECT_TRUE(waiting.deleteRequested);
  EXPECT_EQ(waiting.instance.fileUuid, "attachment-2");
  EXPECT_EQ(outbox.CountDeletionRequests(), 1u);
  EXPECT_TRUE(outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + 2500, NOW + 2500 + LEASE_MS).empty());

  EXPECT_FALSE(outbox.CompleteDeletion(requested, NOW + 3000));

  const OutboxItem item = GetItem(outbox, "orthanc-1");
  EXPECT_FALSE(item.deleteRequested);
  EXPECT_EQ(item.state, ItemState::Pending);
  EXPECT_EQ(item.createdSequence, 0);
  EXPECT_EQ(item.contentMd5, "");
  EXPECT_EQ(item.instance.size, 2000u);
  EXPECT_EQ(outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + 3500, NOW + 3500 + LEASE_MS).size(), 1u);
}


TEST_P(OutboxSnapshotBackendTest, RequeueAfterDeletionSendsNewFile)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1)}, ItemState::Mirrored, DESTINATION_A);

  // The follower queued the new file before Orthanc reported the deletion of the old one.
  outbox.QueueFromChanges({MakeInstance(1, 2000, MD5_SECOND)}, 3, NOW + 1000);
  ASSERT_TRUE(outbox.RequestDeletion("orthanc-1", NOW + 1500));
  EXPECT_TRUE(outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + 1600, NOW + 1600 + LEASE_MS).empty());
  const OutboxItem requested = outbox.ListDeletionRequests(10).at(0);

  NewInstance current = MakeInstance(1, 2000);
  current.fileUuid = "attachment-2";
  outbox.RequeueAfterDeletion(requested, current, NOW + 2000);

  const OutboxItem item = GetItem(outbox, "orthanc-1");
  EXPECT_FALSE(item.deleteRequested);
  EXPECT_EQ(item.state, ItemState::Pending);
  EXPECT_EQ(item.createdSequence, 0);
  EXPECT_FALSE(item.contentChanged);
  EXPECT_EQ(item.instance.fileUuid, "attachment-2");
  EXPECT_EQ(outbox.CountDeletionRequests(), 0u);
}


TEST_P(OutboxSnapshotBackendTest, DroppedDeletionSendsNewFile)
{
  Outbox outbox(path_);
  Confirm(outbox, {MakeInstance(1), MakeInstance(2)}, ItemState::Mirrored, DESTINATION_A);
  ASSERT_TRUE(outbox.RequestDeletion("orthanc-1", NOW + 1000));
  ASSERT_TRUE(outbox.RequestDeletion("orthanc-2", NOW + 1000));
  // Orthanc stored instance 1 again with other content; instance 2 is gone.
  outbox.QueueFromChanges({MakeInstance(1, 2000, MD5_SECOND)}, 3, NOW + 2000);

  EXPECT_EQ(outbox.DropDeletionRequests(NOW + 3000), 2u);

  EXPECT_EQ(outbox.CountDeletionRequests(), 0u);
  const OutboxItem changed = GetItem(outbox, "orthanc-1");
  EXPECT_FALSE(changed.deleteRequested);
  EXPECT_EQ(changed.state, ItemState::Pending);
  EXPECT_TRUE(changed.contentChanged);
  EXPECT_EQ(changed.contentMd5, MD5_FIRST);
  const OutboxItem deleted = GetItem(outbox, "orthanc-2");
  EXPECT_FALSE(deleted.deleteRequested);
  EXPECT_EQ(deleted.state, ItemState::Mirrored);
  const auto claimed = outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + 3500, NOW + 3500 + LEASE_MS);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].instance.orthancId, "orthanc-1");
}


TEST_P(OutboxSnapshotBackendTest, DeletionExcludesRollbackItems)
{
  Outbox outbox(path_);
  const SnapshotRecord snapshot = PrepareRollback(outbox);
  ASSERT_TRUE(outbox.RequestDeletion("orthanc-2", NOW + 1500));
  outbox.StartRollback(snapshot, 0, true, NOW + 2000);

  // In the rollback, orthanc-1 is deleted by the rollback job and not by a second request.
  EXPECT_FALSE(outbox.RequestDeletion("orthanc-1", NOW + 3000));
  EXPECT_EQ(GetItem(outbox, "orthanc-2").rollbackId, 0);
  EXPECT_EQ(outbox.CountDeletionRequests(), 1u);
}


TEST_P(OutboxSnapshotBackendTest, PropertiesAreStored)
{
  {
    Outbox outbox(path_);
    EXPECT_EQ(outbox.GetProperty("RuntimeSettings", "{}"), "{}");

    outbox.SetProperty("RuntimeSettings", "{\"Partition\": \"b\"}");
    EXPECT_EQ(outbox.GetProperty("RuntimeSettings", "{}"), "{\"Partition\": \"b\"}");

    outbox.SetProperty("RuntimeSettings", "{}");
    outbox.SetProperty("Paused", "true");
    EXPECT_EQ(outbox.GetProperty("RuntimeSettings", "x"), "{}");
  }

  Outbox reopened(path_);
  EXPECT_EQ(reopened.GetProperty("Paused", "false"), "true");
  EXPECT_EQ(reopened.GetProperty("Missing", "fallback"), "fallback");
  EXPECT_EQ(reopened.GetFollowerSequence(), -1);
}


TEST_F(OutboxSnapshotTest, VersionOneFileIsMigrated)
{
  ExecuteDirectly(path_, SCHEMA_V1_SQL);
  ExecuteDirectly(path_,
                  "INSERT INTO properties (name, value) VALUES ('FollowerSequence', 42);"
                  "INSERT INTO items (orthanc_id, sop_instance_uid, series_instance_uid, "
                  "study_instance_uid, orthanc_study_id, size, state, status_code, destination, "
                  "queued_at, updated_at, next_attempt_at, sent_at) VALUES "
                  "('orthanc-1', '1.1', '1.2', '1.3', 'study-A', 100, 'Mirrored', 200, "
                  "'https://old.example.com/v1/studies', 10, 20, 10, 20), "
                  "('orthanc-2', '2.1', '1.2', '1.3', 'study-A', 200, 'Pending', 0, '', 30, 30, "
                  "9000000000000, 0);");
  ASSERT_EQ(QueryTextDirectly(path_, "PRAGMA user_version"), "1");

  Outbox outbox(path_);

  EXPECT_EQ(QueryTextDirectly(path_, "PRAGMA user_version"), "5");
  EXPECT_EQ(outbox.GetFollowerSequence(), 42);
  const std::vector<OutboxItem> items = outbox.ListItems(nullptr, 0, 10);
  ASSERT_EQ(items.size(), 2u);

  const OutboxItem& mirrored = items[0];
  EXPECT_EQ(mirrored.instance.orthancId, "orthanc-1");
  EXPECT_EQ(mirrored.state, ItemState::Mirrored);
  EXPECT_EQ(mirrored.instance.size, 100u);
  EXPECT_EQ(mirrored.destination, "https://old.example.com/v1/studies");
  EXPECT_EQ(mirrored.sentAt, 20);
  EXPECT_TRUE(mirrored.sentTo.IsEmpty());
  EXPECT_EQ(mirrored.createdSequence, 0);
  EXPECT_EQ(mirrored.contentMd5, "");
  EXPECT_FALSE(mirrored.contentChanged);
  EXPECT_FALSE(mirrored.contentConflict);
  EXPECT_EQ(mirrored.rollbackId, 0);
  EXPECT_FALSE(mirrored.deleteRequested);
  EXPECT_EQ(items[1].instance.orthancId, "orthanc-2");
  EXPECT_EQ(items[1].state, ItemState::Pending);

  // Items of version 1 count as not created by this plugin: no rollback or delete takes them.
  const SnapshotRecord snapshot = TakeSnapshot(outbox);
  EXPECT_EQ(snapshot.lastCreated, 0);
  EXPECT_EQ(snapshot.lastQueued, 2);
  EXPECT_EQ(outbox.PlanRollback(snapshot, 10).instances, 0u);
  EXPECT_FALSE(outbox.RequestDeletion("orthanc-1", NOW));

  // The migrated file takes new items. The Pending orthanc-2 is due long after NOW, so that the
  // claim takes orthanc-3 alone.
  Confirm(outbox, {MakeInstance(3)}, ItemState::Mirrored, DESTINATION_A);
  EXPECT_EQ(GetItem(outbox, "orthanc-3").id, 3);
  EXPECT_EQ(GetItem(outbox, "orthanc-3").createdSequence, 1);
  EXPECT_EQ(outbox.PlanRollback(snapshot, 10).instances, 1u);
}


TEST_F(OutboxSnapshotTest, MigratedFileReopens)
{
  ExecuteDirectly(path_, SCHEMA_V1_SQL);
  {
    Outbox outbox(path_);
    TakeSnapshot(outbox, NOW, "after the upgrade");
  }

  Outbox reopened(path_);
  EXPECT_EQ(QueryTextDirectly(path_, "PRAGMA user_version"), "5");
  ASSERT_EQ(reopened.ListSnapshots().size(), 1u);
  EXPECT_EQ(reopened.ListSnapshots()[0].label, "after the upgrade");
}
