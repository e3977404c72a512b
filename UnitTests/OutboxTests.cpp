#include "Common/Exception.h"
#include "Sync/Database.h"
#include "Sync/Outbox.h"

#include "OutboxBackends.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <thread>

using namespace AzureDicom;

namespace
{
const int64_t NOW = 1700000000000;
const int64_t LEASE_MS = 60000;
const uint64_t NO_BYTE_LIMIT = 1ull << 40;  // 1 TiB, more than any test queues

NewInstance MakeInstance(int number, const std::string& study = "A", uint64_t size = 1000)
{
  NewInstance instance;
  instance.orthancId = "orthanc-" + std::to_string(number);
  instance.sopInstanceUid = "1.2.826.0.1.3680043.10.1." + std::to_string(number);
  instance.seriesInstanceUid = "1.2.826.0.1.3680043.10.2." + study;
  instance.studyInstanceUid = "1.2.826.0.1.3680043.10.3." + study;
  instance.orthancStudyId = "study-" + study;
  instance.size = size;
  return instance;
}

std::vector<NewInstance> MakeInstances(int first, int count)
{
  std::vector<NewInstance> instances;
  for (int number = first; number < first + count; number++)
  {
    instances.push_back(MakeInstance(number));
  }
  return instances;
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

ItemOutcome MakeOutcome(int64_t id, ItemState state)
{
  ItemOutcome outcome;
  outcome.id = id;
  outcome.state = state;
  return outcome;
}

OutboxItem GetItem(Outbox& outbox, const std::string& orthancId)
{
  OutboxItem item;
  EXPECT_TRUE(outbox.FindItem(item, orthancId)) << orthancId;
  return item;
}

// Runs SQL on a connection of its own, as another process or an administrator would.
void ExecuteDirectly(const std::string& path, const std::string& sql)
{
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
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

mode_t GetPermissions(const std::string& path)
{
  struct stat status;
  EXPECT_EQ(stat(path.c_str(), &status), 0) << path;
  return status.st_mode & 0777;
}
}  // namespace


class OutboxTest : public ::testing::Test
{
 protected:
  void SetUp() override
  {
    std::string pattern = (std::filesystem::temp_directory_path() / "outbox-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    directory_ = pattern;
    path_ = directory_ + "/outbox.db";
  }

  void TearDown() override
  {
    std::filesystem::remove_all(directory_);
  }

  // Queues the instances and claims them all, so that they are Sending.
  std::vector<OutboxItem> QueueAndClaim(Outbox& outbox, const std::vector<NewInstance>& instances)
  {
    outbox.Queue(instances, QueueMode::InsertMissing, NOW);
    std::vector<OutboxItem> claimed =
        outbox.ClaimBatch(instances.size(), NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
    if (claimed.size() != instances.size())
    {
      // Thrown rather than asserted, so that the calling test stops before it indexes the result.
      throw std::logic_error("claimed " + std::to_string(claimed.size()) + " items, expected " +
                             std::to_string(instances.size()));
    }
    return claimed;
  }

  void MarkFailed(Outbox& outbox, const std::vector<NewInstance>& instances)
  {
    std::vector<ItemOutcome> outcomes;
    for (const OutboxItem& item : QueueAndClaim(outbox, instances))
    {
      ItemOutcome outcome = MakeOutcome(item.id, ItemState::Failed);
      outcome.statusCode = 409;
      outcome.failureReason = 43264;
      outcome.message = "validation failed";
      outcomes.push_back(outcome);
    }
    outbox.RecordOutcomes(outcomes, NOW);
  }

  std::string directory_;
  std::string path_;
};


// The tests of OutboxTest that hold for both databases, once for each.
class OutboxBackendTest : public OutboxTest, public ::testing::WithParamInterface<OutboxBackend>
{
protected:
  void SetUp() override
  {
    OutboxTest::SetUp();
    if (GetParam() == OutboxBackend::PostgreSql)
    {
      path_ = PrepareTestPostgreSql();
      ASSERT_FALSE(path_.empty());
    }
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, OutboxBackendTest,
                         ::testing::Values(OutboxBackend::Sqlite, OutboxBackend::PostgreSql),
                         GetBackendName);


TEST_F(OutboxTest, NewDatabaseHasNoSequence)
{
  Outbox outbox(path_);

  EXPECT_EQ(outbox.GetFollowerSequence(), -1);
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Pending), 0u);
  EXPECT_EQ(QueryTextDirectly(path_, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(QueryTextDirectly(path_, "PRAGMA user_version"), "5");
}


TEST_P(OutboxBackendTest, ReopenKeepsItemsAndSequence)
{
  {
    Outbox outbox(path_);
    outbox.QueueFromChanges({MakeInstance(1, "A", 1234), MakeInstance(2)}, 42, NOW);
  }

  Outbox reopened(path_);
  EXPECT_EQ(reopened.GetFollowerSequence(), 42);

  const std::vector<OutboxItem> items = reopened.ListItems(nullptr, 0, 10);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].instance.orthancId, "orthanc-1");
  EXPECT_EQ(items[0].instance.sopInstanceUid, "1.2.826.0.1.3680043.10.1.1");
  EXPECT_EQ(items[0].instance.seriesInstanceUid, "1.2.826.0.1.3680043.10.2.A");
  EXPECT_EQ(items[0].instance.studyInstanceUid, "1.2.826.0.1.3680043.10.3.A");
  EXPECT_EQ(items[0].instance.orthancStudyId, "study-A");
  EXPECT_EQ(items[0].instance.size, 1234u);
  EXPECT_EQ(items[0].state, ItemState::Pending);
  EXPECT_EQ(items[0].queuedAt, NOW);
  EXPECT_EQ(items[0].nextAttemptAt, NOW);
  EXPECT_EQ(items[0].attempts, 0u);
  EXPECT_EQ(items[1].instance.orthancId, "orthanc-2");
  EXPECT_LT(items[0].id, items[1].id);
}


TEST_F(OutboxTest, NewerSchemaIsRejected)
{
  {
    Outbox outbox(path_);
  }
  ExecuteDirectly(path_, "PRAGMA user_version = 99");

  try
  {
    Outbox outbox(path_);
    FAIL() << "a database of schema version 99 was opened";
  }
  catch (const Exception& error)
  {
    EXPECT_EQ(error.GetCode(), ErrorCode::DatabaseError);
    EXPECT_NE(std::string(error.what()).find("schema version 99"), std::string::npos);
    EXPECT_NE(std::string(error.what()).find(path_), std::string::npos);
  }
}


TEST_F(OutboxTest, IdsAreNeverReused)
{
  Outbox outbox(path_);
  outbox.Queue({MakeInstance(1), MakeInstance(2)}, QueueMode::InsertMissing, NOW);
  ExecuteDirectly(path_, "DELETE FROM items WHERE orthanc_id = 'orthanc-2'");

  outbox.Queue({MakeInstance(3)}, QueueMode::InsertMissing, NOW);

  EXPECT_EQ(GetItem(outbox, "orthanc-3").id, 3);
}


TEST_P(OutboxBackendTest, QueueFromChangesIgnoresDuplicate)
{
  Outbox outbox(path_);
  outbox.QueueFromChanges({MakeInstance(1), MakeInstance(2)}, 5, NOW);
  const int64_t firstId = GetItem(outbox, "orthanc-1").id;

  const QueueResult result =
      outbox.QueueFromChanges({MakeInstance(1), MakeInstance(3)}, 9, NOW + 1000);

  EXPECT_EQ(result.inserted, 1u);
  EXPECT_EQ(result.unchanged, 1u);
  EXPECT_EQ(result.requeued, 0u);
  EXPECT_EQ(outbox.GetFollowerSequence(), 9);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").id, firstId);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").queuedAt, NOW);
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Pending), 3u);
}


TEST_P(OutboxBackendTest, QueueFromChangesStoresSequenceAlone)
{
  Outbox outbox(path_);

  const QueueResult result = outbox.QueueFromChanges({}, 17, NOW);

  EXPECT_EQ(result.inserted, 0u);
  EXPECT_EQ(outbox.GetFollowerSequence(), 17);
}


TEST_F(OutboxTest, FailedQueueFromChangesChangesNothing)
{
  Outbox outbox(path_);
  outbox.QueueFromChanges({MakeInstance(1)}, 3, NOW);
  ExecuteDirectly(path_,
                  "CREATE TRIGGER reject_bad BEFORE INSERT ON items WHEN NEW.orthanc_id = "
                  "'orthanc-bad' BEGIN SELECT RAISE(ABORT, 'rejected by the test'); END");
  NewInstance bad = MakeInstance(99);
  bad.orthancId = "orthanc-bad";

  try
  {
    outbox.QueueFromChanges({MakeInstance(2), bad, MakeInstance(4)}, 8, NOW);
    FAIL() << "the trigger did not stop the insert";
  }
  catch (const Exception& error)
  {
    const std::string message = error.what();
    EXPECT_EQ(error.GetCode(), ErrorCode::DatabaseError);
    EXPECT_NE(message.find(path_), std::string::npos) << message;
    EXPECT_NE(message.find("rejected by the test"), std::string::npos) << message;
    EXPECT_NE(message.find("SQLITE_CONSTRAINT_TRIGGER"), std::string::npos) << message;
  }

  OutboxItem item;
  EXPECT_FALSE(outbox.FindItem(item, "orthanc-2"));
  EXPECT_EQ(outbox.GetFollowerSequence(), 3);
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Pending), 1u);

  ExecuteDirectly(path_, "DROP TRIGGER reject_bad");
  outbox.QueueFromChanges({MakeInstance(2), bad}, 8, NOW);
  EXPECT_EQ(outbox.GetFollowerSequence(), 8);
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Pending), 3u);
}


TEST_P(OutboxBackendTest, EmptyOrthancIdIsRejected)
{
  Outbox outbox(path_);
  NewInstance instance = MakeInstance(2);
  instance.orthancId.clear();

  try
  {
    outbox.Queue({MakeInstance(1), instance}, QueueMode::InsertMissing, NOW);
    FAIL() << "an instance without Orthanc ID was queued";
  }
  catch (const Exception& error)
  {
    EXPECT_EQ(error.GetCode(), ErrorCode::InternalError);
    EXPECT_NE(std::string(error.what()).find(instance.sopInstanceUid), std::string::npos);
  }

  EXPECT_EQ(outbox.CountByState().Get(ItemState::Pending), 0u);
}


TEST_P(OutboxBackendTest, ClaimBatchCountLimit)
{
  Outbox outbox(path_);
  outbox.Queue(MakeInstances(1, 5), QueueMode::InsertMissing, NOW);

  const std::vector<OutboxItem> first = outbox.ClaimBatch(3, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  const std::vector<OutboxItem> second = outbox.ClaimBatch(3, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  const std::vector<OutboxItem> third = outbox.ClaimBatch(3, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);

  EXPECT_EQ(GetIds(first), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(GetIds(second), (std::vector<int64_t>{4, 5}));
  EXPECT_TRUE(third.empty());
  EXPECT_EQ(first[0].state, ItemState::Sending);
  EXPECT_EQ(first[0].leaseUntil, NOW + LEASE_MS);
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Sending), 5u);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").leaseUntil, NOW + LEASE_MS);
}


TEST_P(OutboxBackendTest, ClaimBatchZeroCount)
{
  Outbox outbox(path_);
  outbox.Queue(MakeInstances(1, 2), QueueMode::InsertMissing, NOW);

  EXPECT_TRUE(outbox.ClaimBatch(0, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS).empty());
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Pending), 2u);
}


TEST_P(OutboxBackendTest, ClaimBatchByteLimit)
{
  Outbox outbox(path_);
  outbox.Queue({MakeInstance(1, "A", 40), MakeInstance(2, "A", 60), MakeInstance(3, "A", 1)},
               QueueMode::InsertMissing, NOW);

  const std::vector<OutboxItem> first = outbox.ClaimBatch(10, 100, NOW, NOW + LEASE_MS);
  const std::vector<OutboxItem> second = outbox.ClaimBatch(10, 100, NOW, NOW + LEASE_MS);

  EXPECT_EQ(GetIds(first), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(GetIds(second), (std::vector<int64_t>{3}));
}


TEST_P(OutboxBackendTest, ClaimBatchOversizedFirstAlone)
{
  Outbox outbox(path_);
  outbox.Queue({MakeInstance(1, "A", 500), MakeInstance(2, "A", 10)}, QueueMode::InsertMissing,
               NOW);

  const std::vector<OutboxItem> first = outbox.ClaimBatch(10, 100, NOW, NOW + LEASE_MS);
  const std::vector<OutboxItem> second = outbox.ClaimBatch(10, 100, NOW, NOW + LEASE_MS);

  EXPECT_EQ(GetIds(first), (std::vector<int64_t>{1}));
  EXPECT_EQ(GetIds(second), (std::vector<int64_t>{2}));
}


TEST_P(OutboxBackendTest, ClaimBatchKeepsQueueOrder)
{
  Outbox outbox(path_);
  outbox.Queue({MakeInstance(1, "A", 10), MakeInstance(2, "A", 200), MakeInstance(3, "A", 10)},
               QueueMode::InsertMissing, NOW);

  // The second item does not fit after the first: the third must not jump the queue.
  const std::vector<OutboxItem> first = outbox.ClaimBatch(10, 100, NOW, NOW + LEASE_MS);
  const std::vector<OutboxItem> second = outbox.ClaimBatch(10, 100, NOW, NOW + LEASE_MS);

  EXPECT_EQ(GetIds(first), (std::vector<int64_t>{1}));
  EXPECT_EQ(GetIds(second), (std::vector<int64_t>{2}));
}


TEST_P(OutboxBackendTest, ClaimBatchWaitsForNextAttempt)
{
  Outbox outbox(path_);
  const std::vector<OutboxItem> claimed = QueueAndClaim(outbox, {MakeInstance(1)});
  ItemOutcome retry = MakeOutcome(claimed[0].id, ItemState::Pending);
  retry.nextAttemptAt = NOW + 5000;
  outbox.RecordOutcomes({retry}, NOW);
  outbox.Queue({MakeInstance(2)}, QueueMode::InsertMissing, NOW + 1000);

  const std::vector<OutboxItem> early =
      outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + 1000, NOW + LEASE_MS);
  const std::vector<OutboxItem> due =
      outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + 5000, NOW + LEASE_MS);

  EXPECT_EQ(GetIds(early), (std::vector<int64_t>{2}));
  EXPECT_EQ(GetIds(due), (std::vector<int64_t>{1}));
}


TEST_P(OutboxBackendTest, ClaimBatchTakesEarliestDueFirst)
{
  Outbox outbox(path_);
  const std::vector<OutboxItem> claimed = QueueAndClaim(outbox, {MakeInstance(1)});
  ItemOutcome retry = MakeOutcome(claimed[0].id, ItemState::Pending);
  retry.nextAttemptAt = NOW + 5000;
  outbox.RecordOutcomes({retry}, NOW);
  outbox.Queue({MakeInstance(2)}, QueueMode::InsertMissing, NOW + 1000);
  outbox.Queue({MakeInstance(3)}, QueueMode::InsertMissing, NOW + 9000);

  const std::vector<OutboxItem> batch =
      outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + 9000, NOW + 9000 + LEASE_MS);

  EXPECT_EQ(GetIds(batch), (std::vector<int64_t>{2, 1, 3}));
}


TEST_P(OutboxBackendTest, ClaimBatchExpiresLeases)
{
  Outbox outbox(path_);
  outbox.Queue(MakeInstances(1, 2), QueueMode::InsertMissing, NOW);
  outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);

  const std::vector<OutboxItem> during =
      outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + LEASE_MS - 1, NOW + 2 * LEASE_MS);
  const std::vector<OutboxItem> after =
      outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + LEASE_MS + 1, NOW + 3 * LEASE_MS);

  EXPECT_TRUE(during.empty());
  EXPECT_EQ(GetIds(after), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(after[0].leaseUntil, NOW + 3 * LEASE_MS);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").attempts, 0u);
}


TEST_P(OutboxBackendTest, ExpireLeasesCountsExpired)
{
  Outbox outbox(path_);
  outbox.Queue(MakeInstances(1, 3), QueueMode::InsertMissing, NOW);
  outbox.ClaimBatch(2, NO_BYTE_LIMIT, NOW, NOW + 10);
  outbox.ClaimBatch(1, NO_BYTE_LIMIT, NOW, NOW + 1000);

  EXPECT_EQ(outbox.ExpireLeases(NOW + 5), 0u);
  EXPECT_EQ(outbox.ExpireLeases(NOW + 11), 2u);
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Pending), 2u);
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Sending), 1u);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").leaseUntil, 0);
}


TEST_P(OutboxBackendTest, ReleaseAllLeasesResetsSending)
{
  Outbox outbox(path_);
  QueueAndClaim(outbox, MakeInstances(1, 3));

  EXPECT_EQ(outbox.ReleaseAllLeases(NOW + 1), 3u);
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Pending), 3u);
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Sending), 0u);
  EXPECT_EQ(GetItem(outbox, "orthanc-2").attempts, 0u);
  EXPECT_EQ(GetItem(outbox, "orthanc-2").leaseUntil, 0);
  EXPECT_EQ(outbox.ReleaseAllLeases(NOW + 2), 0u);
}


TEST_P(OutboxBackendTest, RecordOutcomesPerState)
{
  Outbox outbox(path_);
  const std::vector<OutboxItem> claimed = QueueAndClaim(outbox, MakeInstances(1, 4));
  const std::string url = "http://127.0.0.1:8042/v2/studies";
  ItemOutcome mirrored = MakeOutcome(claimed[0].id, ItemState::Mirrored);
  mirrored.statusCode = 202;
  mirrored.warningReason = 45063;
  mirrored.destination = url;
  ItemOutcome present = MakeOutcome(claimed[1].id, ItemState::AlreadyPresent);
  present.statusCode = 409;
  present.failureReason = 45070;
  present.destination = url;
  ItemOutcome failed = MakeOutcome(claimed[2].id, ItemState::Failed);
  failed.statusCode = 409;
  failed.failureReason = 43264;
  failed.message = "Validation of the instance failed";
  ItemOutcome retry = MakeOutcome(claimed[3].id, ItemState::Pending);
  retry.statusCode = 202;
  retry.failureReason = 272;
  retry.nextAttemptAt = NOW + 2000;

  outbox.RecordOutcomes({mirrored, present, failed, retry}, NOW + 100);

  const OutboxItem first = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(first.state, ItemState::Mirrored);
  EXPECT_EQ(first.statusCode, 202);
  EXPECT_EQ(first.warningReason, 45063u);
  EXPECT_EQ(first.destination, url);
  EXPECT_EQ(first.sentAt, NOW + 100);
  EXPECT_EQ(first.updatedAt, NOW + 100);
  EXPECT_EQ(first.leaseUntil, 0);
  EXPECT_EQ(first.attempts, 1u);

  const OutboxItem second = GetItem(outbox, "orthanc-2");
  EXPECT_EQ(second.state, ItemState::AlreadyPresent);
  EXPECT_EQ(second.failureReason, 45070u);
  EXPECT_EQ(second.sentAt, NOW + 100);

  const OutboxItem third = GetItem(outbox, "orthanc-3");
  EXPECT_EQ(third.state, ItemState::Failed);
  EXPECT_EQ(third.failureReason, 43264u);
  EXPECT_EQ(third.message, "Validation of the instance failed");
  EXPECT_EQ(third.sentAt, 0);
  EXPECT_EQ(third.destination, "");

  const OutboxItem fourth = GetItem(outbox, "orthanc-4");
  EXPECT_EQ(fourth.state, ItemState::Pending);
  EXPECT_EQ(fourth.nextAttemptAt, NOW + 2000);
  EXPECT_EQ(fourth.attempts, 1u);
  EXPECT_EQ(fourth.sentAt, 0);
  EXPECT_EQ(fourth.leaseUntil, 0);
}


TEST_P(OutboxBackendTest, RecordOutcomesCountsAttempts)
{
  Outbox outbox(path_);
  for (int round = 0; round < 3; round++)
  {
    std::vector<OutboxItem> claimed = QueueAndClaim(outbox, {MakeInstance(1)});
    ASSERT_EQ(claimed.size(), 1u);
    ItemOutcome outcome = MakeOutcome(claimed[0].id, ItemState::Pending);
    outcome.countAttempt = (round != 1);
    outcome.nextAttemptAt = NOW;
    outbox.RecordOutcomes({outcome}, NOW);
  }

  EXPECT_EQ(GetItem(outbox, "orthanc-1").attempts, 2u);
}


TEST_P(OutboxBackendTest, RecordOutcomesOnlySendingItems)
{
  Outbox outbox(path_);
  const std::vector<OutboxItem> claimed = QueueAndClaim(outbox, MakeInstances(1, 2));
  outbox.ReleaseAllLeases(NOW);
  outbox.ClaimBatch(1, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);

  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Mirrored),
                         MakeOutcome(claimed[1].id, ItemState::Mirrored)},
                        NOW);

  EXPECT_EQ(GetItem(outbox, "orthanc-1").state, ItemState::Mirrored);
  const OutboxItem second = GetItem(outbox, "orthanc-2");
  EXPECT_EQ(second.state, ItemState::Pending);
  EXPECT_EQ(second.attempts, 0u);
  EXPECT_EQ(second.sentAt, 0);
}


TEST_P(OutboxBackendTest, RecordOutcomesKeepsDestination)
{
  Outbox outbox(path_);
  std::vector<OutboxItem> claimed = QueueAndClaim(outbox, {MakeInstance(1)});
  ItemOutcome first = MakeOutcome(claimed[0].id, ItemState::Pending);
  first.destination = "http://127.0.0.1:8042/v2/studies";
  outbox.RecordOutcomes({first}, NOW);
  claimed = outbox.ClaimBatch(1, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  ASSERT_EQ(claimed.size(), 1u);

  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Failed)}, NOW);

  EXPECT_EQ(GetItem(outbox, "orthanc-1").destination, "http://127.0.0.1:8042/v2/studies");
}


TEST_P(OutboxBackendTest, RecordOutcomesRejectsSending)
{
  Outbox outbox(path_);
  const std::vector<OutboxItem> claimed = QueueAndClaim(outbox, MakeInstances(1, 2));

  EXPECT_THROW(outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Mirrored),
                                      MakeOutcome(claimed[1].id, ItemState::Sending)},
                                     NOW),
               Exception);

  EXPECT_EQ(GetItem(outbox, "orthanc-1").state, ItemState::Sending);
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Mirrored), 0u);
}


TEST_P(OutboxBackendTest, ReleaseCountsNoAttempt)
{
  Outbox outbox(path_);
  const std::vector<OutboxItem> claimed = QueueAndClaim(outbox, MakeInstances(1, 3));
  outbox.RecordOutcomes({MakeOutcome(claimed[2].id, ItemState::Mirrored)}, NOW);

  outbox.Release(GetIds(claimed), NOW + 500, NOW + 1);

  const OutboxItem first = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(first.state, ItemState::Pending);
  EXPECT_EQ(first.nextAttemptAt, NOW + 500);
  EXPECT_EQ(first.leaseUntil, 0);
  EXPECT_EQ(first.attempts, 0u);
  EXPECT_EQ(first.updatedAt, NOW + 1);
  EXPECT_EQ(GetItem(outbox, "orthanc-2").state, ItemState::Pending);
  EXPECT_EQ(GetItem(outbox, "orthanc-3").state, ItemState::Mirrored);
  EXPECT_TRUE(outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + 499, NOW + LEASE_MS).empty());
}


TEST_P(OutboxBackendTest, QueueInsertMissing)
{
  Outbox outbox(path_);
  MarkFailed(outbox, {MakeInstance(1)});

  const QueueResult result =
      outbox.Queue({MakeInstance(1), MakeInstance(2)}, QueueMode::InsertMissing, NOW);

  EXPECT_EQ(result.inserted, 1u);
  EXPECT_EQ(result.requeued, 0u);
  EXPECT_EQ(result.unchanged, 1u);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").state, ItemState::Failed);
  EXPECT_EQ(GetItem(outbox, "orthanc-2").state, ItemState::Pending);
}


TEST_P(OutboxBackendTest, QueueRequeueFailed)
{
  Outbox outbox(path_);
  MarkFailed(outbox, {MakeInstance(1)});
  const std::vector<OutboxItem> claimed = QueueAndClaim(outbox, {MakeInstance(2)});
  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Mirrored)}, NOW);

  const QueueResult result = outbox.Queue({MakeInstance(1), MakeInstance(2), MakeInstance(3)},
                                          QueueMode::RequeueFailed, NOW + 10);

  EXPECT_EQ(result.inserted, 1u);
  EXPECT_EQ(result.requeued, 1u);
  EXPECT_EQ(result.unchanged, 1u);
  const OutboxItem first = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(first.state, ItemState::Pending);
  EXPECT_EQ(first.attempts, 0u);
  EXPECT_EQ(first.message, "");
  EXPECT_EQ(first.failureReason, 0u);
  EXPECT_EQ(first.nextAttemptAt, NOW + 10);
  EXPECT_EQ(GetItem(outbox, "orthanc-2").state, ItemState::Mirrored);
}


TEST_P(OutboxBackendTest, RetryStateOnlyRetryable)
{
  Outbox outbox(path_);
  MarkFailed(outbox, MakeInstances(1, 2));
  const std::vector<OutboxItem> claimed = QueueAndClaim(outbox, {MakeInstance(3)});
  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Mirrored)}, NOW);
  outbox.Queue({MakeInstance(4)}, QueueMode::InsertMissing, NOW);

  EXPECT_EQ(outbox.RetryState(ItemState::Mirrored, NOW), 0u);
  EXPECT_EQ(outbox.RetryState(ItemState::Pending, NOW), 0u);
  EXPECT_EQ(outbox.RetryState(ItemState::Sending, NOW), 0u);
  EXPECT_EQ(outbox.RetryState(ItemState::Failed, NOW + 50), 2u);

  const StateCounts counts = outbox.CountByState();
  EXPECT_EQ(counts.Get(ItemState::Failed), 0u);
  EXPECT_EQ(counts.Get(ItemState::Pending), 3u);
  EXPECT_EQ(counts.Get(ItemState::Mirrored), 1u);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").attempts, 0u);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").queuedAt, NOW + 50);
}


TEST_P(OutboxBackendTest, RetryInstancesOnlyRetryable)
{
  Outbox outbox(path_);
  MarkFailed(outbox, MakeInstances(1, 2));
  outbox.Queue({MakeInstance(3)}, QueueMode::InsertMissing, NOW);
  outbox.MarkSkipped(GetItem(outbox, "orthanc-3").id, "deleted from Orthanc", NOW);
  outbox.Queue({MakeInstance(4)}, QueueMode::InsertMissing, NOW);

  const uint64_t retried =
      outbox.RetryInstances({"orthanc-1", "orthanc-3", "orthanc-4", "orthanc-missing"}, NOW);

  EXPECT_EQ(retried, 2u);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").state, ItemState::Pending);
  EXPECT_EQ(GetItem(outbox, "orthanc-2").state, ItemState::Failed);
  EXPECT_EQ(GetItem(outbox, "orthanc-3").state, ItemState::Pending);
  EXPECT_EQ(GetItem(outbox, "orthanc-3").message, "");
}


TEST_P(OutboxBackendTest, MarkSkippedOnlyUnsent)
{
  Outbox outbox(path_);
  const std::vector<OutboxItem> claimed = QueueAndClaim(outbox, MakeInstances(1, 2));
  outbox.RecordOutcomes({MakeOutcome(claimed[1].id, ItemState::Mirrored)}, NOW);

  outbox.MarkSkipped(claimed[0].id, "deleted from Orthanc", NOW + 1);
  outbox.MarkSkipped(claimed[1].id, "deleted from Orthanc", NOW + 1);

  const OutboxItem first = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(first.state, ItemState::Skipped);
  EXPECT_EQ(first.message, "deleted from Orthanc");
  EXPECT_EQ(first.leaseUntil, 0);
  EXPECT_EQ(GetItem(outbox, "orthanc-2").state, ItemState::Mirrored);
}


TEST_P(OutboxBackendTest, ListItemsPaging)
{
  Outbox outbox(path_);
  outbox.Queue(MakeInstances(1, 5), QueueMode::InsertMissing, NOW);

  EXPECT_EQ(GetIds(outbox.ListItems(nullptr, 0, 2)), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(GetIds(outbox.ListItems(nullptr, 2, 2)), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(GetIds(outbox.ListItems(nullptr, 4, 2)), (std::vector<int64_t>{5}));
  EXPECT_TRUE(outbox.ListItems(nullptr, 5, 2).empty());
  EXPECT_TRUE(outbox.ListItems(nullptr, 0, 0).empty());
}


TEST_P(OutboxBackendTest, ListItemsByState)
{
  Outbox outbox(path_);
  const std::vector<OutboxItem> claimed = QueueAndClaim(outbox, MakeInstances(1, 5));
  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Mirrored),
                         MakeOutcome(claimed[1].id, ItemState::Failed),
                         MakeOutcome(claimed[2].id, ItemState::Mirrored),
                         MakeOutcome(claimed[3].id, ItemState::Failed),
                         MakeOutcome(claimed[4].id, ItemState::Failed)},
                        NOW);
  const ItemState failed = ItemState::Failed;

  const std::vector<OutboxItem> firstPage = outbox.ListItems(&failed, 0, 2);
  const std::vector<OutboxItem> secondPage = outbox.ListItems(&failed, firstPage.back().id, 2);

  EXPECT_EQ(GetIds(firstPage), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(GetIds(secondPage), (std::vector<int64_t>{5}));
  EXPECT_EQ(firstPage[0].state, ItemState::Failed);
  EXPECT_TRUE(outbox.ListItems(&failed, 5, 2).empty());
}


TEST_P(OutboxBackendTest, FindItemByBothKeys)
{
  Outbox outbox(path_);
  outbox.Queue(MakeInstances(1, 3), QueueMode::InsertMissing, NOW);

  OutboxItem byOrthancId;
  OutboxItem bySopInstanceUid;
  OutboxItem missing;
  ASSERT_TRUE(outbox.FindItem(byOrthancId, "orthanc-2"));
  ASSERT_TRUE(outbox.FindItem(bySopInstanceUid, "1.2.826.0.1.3680043.10.1.3"));
  EXPECT_FALSE(outbox.FindItem(missing, "1.2.826.0.1.3680043.10.1.9"));

  EXPECT_EQ(byOrthancId.instance.orthancId, "orthanc-2");
  EXPECT_EQ(byOrthancId.id, 2);
  EXPECT_EQ(bySopInstanceUid.instance.orthancId, "orthanc-3");
  EXPECT_EQ(missing.id, 0);
}


TEST_P(OutboxBackendTest, GetStudySummaryByBothKeys)
{
  Outbox outbox(path_);
  const std::vector<OutboxItem> claimed =
      QueueAndClaim(outbox, {MakeInstance(1, "A", 100), MakeInstance(2, "A", 200)});
  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Mirrored)}, NOW);
  outbox.ReleaseAllLeases(NOW);
  outbox.Queue({MakeInstance(3, "A", 300), MakeInstance(4, "B", 5000)}, QueueMode::InsertMissing,
               NOW);

  StudySummary byOrthancId;
  StudySummary byStudyInstanceUid;
  StudySummary missing;
  ASSERT_TRUE(outbox.GetStudySummary(byOrthancId, "study-A"));
  ASSERT_TRUE(outbox.GetStudySummary(byStudyInstanceUid, "1.2.826.0.1.3680043.10.3.B"));
  EXPECT_FALSE(outbox.GetStudySummary(missing, "study-C"));

  EXPECT_EQ(byOrthancId.orthancStudyId, "study-A");
  EXPECT_EQ(byOrthancId.studyInstanceUid, "1.2.826.0.1.3680043.10.3.A");
  EXPECT_EQ(byOrthancId.instances, 3u);
  EXPECT_EQ(byOrthancId.bytes, 600u);
  EXPECT_EQ(byOrthancId.counts.Get(ItemState::Mirrored), 1u);
  EXPECT_EQ(byOrthancId.counts.Get(ItemState::Pending), 2u);
  EXPECT_EQ(byStudyInstanceUid.orthancStudyId, "study-B");
  EXPECT_EQ(byStudyInstanceUid.instances, 1u);
  EXPECT_EQ(byStudyInstanceUid.bytes, 5000u);
  EXPECT_EQ(missing.instances, 0u);
}


TEST_P(OutboxBackendTest, OldestPendingTime)
{
  Outbox outbox(path_);
  EXPECT_EQ(outbox.GetOldestPendingTime(), 0);

  outbox.Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW);
  outbox.Queue({MakeInstance(2)}, QueueMode::InsertMissing, NOW + 100);
  outbox.Queue({MakeInstance(3)}, QueueMode::InsertMissing, NOW + 200);
  const std::vector<OutboxItem> claimed = outbox.ClaimBatch(1, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(outbox.GetOldestPendingTime(), NOW);

  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Mirrored)}, NOW);
  EXPECT_EQ(outbox.GetOldestPendingTime(), NOW + 100);

  const std::vector<OutboxItem> rest =
      outbox.ClaimBatch(2, NO_BYTE_LIMIT, NOW + 200, NOW + LEASE_MS);
  ASSERT_EQ(rest.size(), 2u);
  outbox.RecordOutcomes({MakeOutcome(rest[0].id, ItemState::Failed),
                         MakeOutcome(rest[1].id, ItemState::AlreadyPresent)},
                        NOW);
  EXPECT_EQ(outbox.GetOldestPendingTime(), 0);
}


TEST_F(OutboxTest, FilesArePrivate)
{
  // With umask 0, a file that SQLite created itself would be 0644.
  const mode_t previousMask = umask(0);
  {
    Outbox outbox(path_);
    outbox.Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW);

    EXPECT_EQ(GetPermissions(path_), 0600u);
    EXPECT_EQ(GetPermissions(path_ + "-wal"), 0600u);
    EXPECT_EQ(GetPermissions(path_ + "-shm"), 0600u);
  }
  umask(previousMask);
}


TEST_F(OutboxTest, FileUuidFollowsNewAttachment)
{
  Outbox outbox(path_);
  NewInstance first = MakeInstance(1);
  first.fileUuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
  first.fileMd5 = "00112233445566778899aabbccddeeff";
  outbox.QueueFromChanges({first}, 1, NOW);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").instance.fileUuid, first.fileUuid);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").instance.fileMd5, first.fileMd5);

  // Stored again while its item waits: the item takes the new attachment, its size and digest.
  NewInstance again = MakeInstance(1, "A", 2000);
  again.fileUuid = "11111111-2222-3333-4444-555555555555";
  again.fileMd5 = "ffeeddccbbaa99887766554433221100";
  outbox.QueueFromChanges({again}, 2, NOW + 10);
  const std::vector<OutboxItem> claimed =
      outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW + 20, NOW + 20 + LEASE_MS);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].instance.fileUuid, again.fileUuid);
  EXPECT_EQ(claimed[0].instance.fileMd5, again.fileMd5);
  EXPECT_EQ(claimed[0].instance.size, 2000u);

  // Failed, then stored again: requeued with the newest attachment. Orthanc had no digest of it.
  outbox.RecordOutcomes({MakeOutcome(claimed[0].id, ItemState::Failed)}, NOW + 30);
  NewInstance third = MakeInstance(1, "A", 3000);
  third.fileUuid = "66666666-7777-8888-9999-aaaaaaaaaaaa";
  outbox.Queue({third}, QueueMode::RequeueFailed, NOW + 40);
  const OutboxItem requeued = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(requeued.state, ItemState::Pending);
  EXPECT_EQ(requeued.instance.fileUuid, third.fileUuid);
  EXPECT_EQ(requeued.instance.fileMd5, "");
  EXPECT_EQ(requeued.instance.size, 3000u);
}


TEST_F(OutboxTest, VersionThreeFileIsMigrated)
{
  {
    Outbox outbox(path_);
    outbox.QueueFromChanges({MakeInstance(1)}, 5, NOW);
  }
  ExecuteDirectly(
      path_,
      "ALTER TABLE items DROP COLUMN file_uuid; ALTER TABLE items DROP COLUMN file_md5; "
      "PRAGMA user_version = 3;");

  Outbox outbox(path_);
  EXPECT_EQ(QueryTextDirectly(path_, "PRAGMA user_version"), "5");
  EXPECT_EQ(outbox.GetFollowerSequence(), 5);
  EXPECT_EQ(GetItem(outbox, "orthanc-1").instance.fileUuid, "");
}


TEST_F(OutboxTest, VersionFourFileIsMigrated)
{
  {
    Outbox outbox(path_);
    NewInstance instance = MakeInstance(1);
    instance.fileUuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    outbox.QueueFromChanges({instance}, 5, NOW);
  }
  ExecuteDirectly(path_, "ALTER TABLE items DROP COLUMN file_md5; PRAGMA user_version = 4;");

  Outbox outbox(path_);
  EXPECT_EQ(QueryTextDirectly(path_, "PRAGMA user_version"), "5");
  const OutboxItem item = GetItem(outbox, "orthanc-1");
  EXPECT_EQ(item.instance.fileUuid, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
  EXPECT_EQ(item.instance.fileMd5, "");
}


TEST_F(OutboxTest, OnlyRepairableWritesCommitWithoutSync)
{
  std::unique_ptr<Database> database = OpenDatabase(path_);
  auto synchronousIn = [&database](TransactionMode mode)
  {
    Transaction transaction(*database, mode, "read the synchronous setting");
    StatementPtr statement = Prepare(*database, "PRAGMA synchronous");
    Query query(*database, statement, "read the synchronous setting");
    const int64_t value = query.Step() ? query.GetInt64(0) : -1;
    transaction.Commit();
    return value;
  };

  // SQLite's values: 1 is NORMAL, 2 is FULL.
  EXPECT_EQ(2, synchronousIn(TransactionMode::Write));
  EXPECT_EQ(1, synchronousIn(TransactionMode::RepairableWrite));
  EXPECT_EQ(1, synchronousIn(TransactionMode::RepairableWrite));
  EXPECT_EQ(2, synchronousIn(TransactionMode::Read));
  EXPECT_EQ(2, synchronousIn(TransactionMode::Write));
}


TEST_F(OutboxTest, MissingDirectoryThrows)
{
  const std::string path = directory_ + "/missing/outbox.db";

  try
  {
    Outbox outbox(path);
    FAIL() << "an outbox was opened in a missing directory";
  }
  catch (const Exception& error)
  {
    EXPECT_EQ(error.GetCode(), ErrorCode::DatabaseError);
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
  }
}


TEST_F(OutboxTest, NotDatabaseThrows)
{
  std::ofstream(path_) << std::string(8192, 'x');

  try
  {
    Outbox outbox(path_);
    FAIL() << "a file that is not a database was opened";
  }
  catch (const Exception& error)
  {
    const std::string message = error.what();
    EXPECT_EQ(error.GetCode(), ErrorCode::DatabaseError);
    EXPECT_NE(message.find(path_), std::string::npos) << message;
    EXPECT_NE(message.find("SQLITE_NOTADB"), std::string::npos) << message;
  }
}


TEST_P(OutboxBackendTest, ConcurrentClaimsAreDisjoint)
{
  const int instanceCount = 1000;
  const int threadCount = 4;
  Outbox outbox(path_);
  outbox.Queue(MakeInstances(1, instanceCount), QueueMode::InsertMissing, NOW);

  std::vector<std::vector<int64_t>> claimedByThread(threadCount);
  std::vector<std::thread> threads;
  for (int index = 0; index < threadCount; index++)
  {
    threads.emplace_back(
        [&outbox, &claimedByThread, index]()
        {
          for (;;)
          {
            const std::vector<OutboxItem> batch =
                outbox.ClaimBatch(7, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
            if (batch.empty())
            {
              return;
            }
            for (const OutboxItem& item : batch)
            {
              claimedByThread[index].push_back(item.id);
            }
          }
        });
  }
  for (std::thread& thread : threads)
  {
    thread.join();
  }

  std::set<int64_t> distinct;
  size_t total = 0;
  for (const std::vector<int64_t>& ids : claimedByThread)
  {
    total += ids.size();
    distinct.insert(ids.begin(), ids.end());
  }
  EXPECT_EQ(total, static_cast<size_t>(instanceCount));
  EXPECT_EQ(distinct.size(), static_cast<size_t>(instanceCount));
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Sending), static_cast<uint64_t>(instanceCount));
}


TEST_P(OutboxBackendTest, TwoConnectionsShareTheFile)
{
  Outbox first(path_);
  Outbox second(path_);
  first.Queue(MakeInstances(1, 10), QueueMode::InsertMissing, NOW);

  const std::vector<OutboxItem> firstBatch =
      first.ClaimBatch(5, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  const std::vector<OutboxItem> secondBatch =
      second.ClaimBatch(10, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);

  EXPECT_EQ(GetIds(firstBatch), (std::vector<int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(GetIds(secondBatch), (std::vector<int64_t>{6, 7, 8, 9, 10}));
}
