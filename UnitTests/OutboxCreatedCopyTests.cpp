#include "Common/Exception.h"
#include "Common/Logger.h"
#include "Sync/DeletionWorker.h"
#include "Sync/Outbox.h"

#include "OutboxBackends.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace AzureDicom;

namespace
{
const int64_t NOW = 1700000000000;
const int64_t LEASE_MS = 60000;
const uint64_t NO_BYTE_LIMIT = 1ull << 40;  // 1 TiB, more than any test queues

const char* const MD5_FIRST = "0cc175b9c0f1b6a831c399e269772661";
const char* const MD5_SECOND = "92eb5ffee6ae2fec3ad71c777531578f";

const Destination DESTINATION{"https://a.example.com", "v2", "p1"};


NewInstance MakeInstance(int number, const std::string& contentMd5 = "")
{
  NewInstance instance;
  instance.orthancId = "orthanc-" + std::to_string(number);
  instance.sopInstanceUid = "1.2.826.0.1.3680043.10.1." + std::to_string(number);
  instance.seriesInstanceUid = "1.2.826.0.1.3680043.10.2.A";
  instance.studyInstanceUid = "1.2.826.0.1.3680043.10.3.A";
  instance.orthancStudyId = "study-A";
  instance.size = 1000;
  instance.contentMd5 = contentMd5;
  return instance;
}


class SilentLogger : public ILogger
{
public:
  void Info(const std::string&) override {}

  void Warning(const std::string&) override {}

  void Error(const std::string&) override {}
};


// Returns 204 to every DELETE after running duringDelete, as a service that deletes the copy.
class DeletingSender : public IStowSender
{
public:
  explicit DeletingSender(std::function<void()> duringDelete)
      : duringDelete_(std::move(duringDelete))
  {
  }

  HttpResponse Post(const std::string&, const std::string&) override
  {
    throw Exception(ErrorCode::NetworkError, "POST is not expected");
  }

  HttpResponse Put(const std::string&, const std::string&) override
  {
    throw Exception(ErrorCode::NetworkError, "PUT is not expected");
  }

  HttpResponse Delete(const std::string&) override
  {
    duringDelete_();
    HttpResponse response;
    response.status = 204;
    return response;
  }

  void InvalidateToken() override {}

private:
  std::function<void()> duringDelete_;
};


OutboxItem GetItem(Outbox& outbox, const std::string& orthancId)
{
  OutboxItem item;
  EXPECT_TRUE(outbox.FindItem(item, orthancId)) << orthancId;
  return item;
}
}  // namespace


// The copies that this plugin created at the service, as rollbacks and mirrored deletes find
// them again after an item changed state.
class OutboxCreatedCopyTest : public ::testing::TestWithParam<OutboxBackend>
{
protected:
  void SetUp() override
  {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "outbox-created-copy-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    directory_ = pattern;

    std::string database = directory_ + "/outbox.db";
    if (GetParam() == OutboxBackend::PostgreSql)
    {
      database = PrepareTestPostgreSql();
      ASSERT_FALSE(database.empty());
    }
    outbox_ = std::make_unique<Outbox>(database);
  }

  void TearDown() override
  {
    outbox_.reset();
    std::filesystem::remove_all(directory_);
  }

  // Claims the due items and records them Mirrored at DESTINATION.
  void MirrorDueItems(size_t count, int64_t now)
  {
    const std::vector<OutboxItem> claimed =
        outbox_->ClaimBatch(count, NO_BYTE_LIMIT, now, now + LEASE_MS);
    if (claimed.size() != count)
    {
      throw std::logic_error("claimed " + std::to_string(claimed.size()) + " items, expected " +
                             std::to_string(count));
    }

    std::vector<ItemOutcome> outcomes;
    for (const OutboxItem& item : claimed)
    {
      ItemOutcome outcome;
      outcome.id = item.id;
      outcome.state = ItemState::Mirrored;
      outcome.statusCode = 200;
      outcome.destination = DESTINATION.GetDicomWebBase() + "/studies";
      outcome.sentTo = DESTINATION;
      outcome.contentMd5 = MD5_FIRST;
      outcomes.push_back(outcome);
    }
    outbox_->RecordOutcomes(outcomes, now);
  }

  SnapshotRecord TakeSnapshot(int64_t now)
  {
    SnapshotRecord snapshot;
    snapshot.reason = "Manual";
    snapshot.createdAt = now;
    snapshot.settings = "{}";
    outbox_->InsertSnapshot(snapshot);
    return snapshot;
  }

  // Mirrors orthanc-1 after a snapshot, rolls it back to that snapshot and returns the
  // snapshot. The item ends RolledBack.
  SnapshotRecord RollBackOneItem()
  {
    const SnapshotRecord snapshot = TakeSnapshot(NOW);
    outbox_->Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW + 1000);
    MirrorDueItems(1, NOW + 1000);

    const int64_t rollbackId = outbox_->StartRollback(snapshot, 0, true, NOW + 2000);
    outbox_->RecordRemoval(rollbackId, GetItem(*outbox_, "orthanc-1").id, RemovalOutcome::Deleted,
                           "HTTP 204", NOW + 3000);
    outbox_->FinishRollback(rollbackId, RollbackState::Success, "", NOW + 4000);
    return snapshot;
  }

  std::string directory_;
  std::unique_ptr<Outbox> outbox_;
};

INSTANTIATE_TEST_SUITE_P(Backends, OutboxCreatedCopyTest,
                         ::testing::Values(OutboxBackend::Sqlite, OutboxBackend::PostgreSql),
                         GetBackendName);


TEST_P(OutboxCreatedCopyTest, RestoredAfterRollbackIsDeletable)
{
  RollBackOneItem();
  ASSERT_EQ(GetItem(*outbox_, "orthanc-1").state, ItemState::RolledBack);

  // Orthanc stores the instance again, and the plugin creates a new copy at the service.
  outbox_->QueueFromChanges({MakeInstance(1)}, 10, NOW + 5000);
  MirrorDueItems(1, NOW + 5000);
  const OutboxItem item = GetItem(*outbox_, "orthanc-1");
  ASSERT_EQ(item.state, ItemState::Mirrored);
  ASSERT_GT(item.createdSequence, 0);

  EXPECT_EQ(item.rollbackId, 0);
  EXPECT_TRUE(outbox_->RequestDeletion("orthanc-1", NOW + 6000));
}


TEST_P(OutboxCreatedCopyTest, RetriedAfterRollbackIsPlanned)
{
  RollBackOneItem();
  const SnapshotRecord later = TakeSnapshot(NOW + 4500);

  ASSERT_EQ(outbox_->RetryState(ItemState::RolledBack, NOW + 5000), 1u);
  MirrorDueItems(1, NOW + 5000);

  const RollbackPlan plan = outbox_->PlanRollback(later, 20);
  EXPECT_EQ(plan.instances, 1u);
}


TEST_P(OutboxCreatedCopyTest, ChangedCopyIsDeletable)
{
  outbox_->Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW);
  MirrorDueItems(1, NOW);

  // Stored again with other content, then deleted in Orthanc before it was sent again: the
  // copy that the plugin created is still at the service.
  outbox_->QueueFromChanges({MakeInstance(1, MD5_SECOND)}, 10, NOW + 1000);
  const OutboxItem item = GetItem(*outbox_, "orthanc-1");
  ASSERT_EQ(item.state, ItemState::Pending);
  ASSERT_GT(item.createdSequence, 0);

  EXPECT_TRUE(outbox_->RequestDeletion("orthanc-1", NOW + 2000));
}


TEST_P(OutboxCreatedCopyTest, ChangedCopyIsRolledBack)
{
  const SnapshotRecord snapshot = TakeSnapshot(NOW);
  outbox_->Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW + 1000);
  MirrorDueItems(1, NOW + 1000);

  // Stored again with other content after the snapshot, and not sent yet.
  outbox_->QueueFromChanges({MakeInstance(1, MD5_SECOND)}, 10, NOW + 2000);
  ASSERT_GT(GetItem(*outbox_, "orthanc-1").createdSequence, snapshot.lastCreated);

  const RollbackPlan plan = outbox_->PlanRollback(snapshot, 20);

  EXPECT_EQ(plan.instances, 1u);
}


TEST_P(OutboxCreatedCopyTest, EmptyMessagesAreStored)
{
  const SnapshotRecord snapshot = TakeSnapshot(NOW);
  outbox_->Queue({MakeInstance(1), MakeInstance(2)}, QueueMode::InsertMissing, NOW + 1000);
  MirrorDueItems(2, NOW + 1000);
  ASSERT_TRUE(outbox_->RequestDeletion("orthanc-2", NOW + 1500));
  const int64_t rollbackId = outbox_->StartRollback(snapshot, 0, true, NOW + 2000);

  EXPECT_NO_THROW(outbox_->RecordRemoval(rollbackId, GetItem(*outbox_, "orthanc-1").id,
                                         RemovalOutcome::Deleted, "", NOW + 3000));
  EXPECT_NO_THROW(outbox_->SetRollbackJob(rollbackId, ""));
  EXPECT_NO_THROW(outbox_->AbandonDeletion(GetItem(*outbox_, "orthanc-2").id, "", NOW + 3000));
}


TEST_P(OutboxCreatedCopyTest, StoredAgainDuringDeleteIsSentAgain)
{
  outbox_->Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW);
  MirrorDueItems(1, NOW);
  ASSERT_TRUE(outbox_->RequestDeletion("orthanc-1", NOW + 1000));

  // Orthanc stores the instance again while the service deletes its copy.
  std::mutex mutex;
  bool deleted = false;
  SilentLogger logger;
  DeletionWorker worker(*outbox_, logger, RetrySettings(),
                        [&]()
                        {
                          return std::unique_ptr<IStowSender>(std::make_unique<DeletingSender>(
                              [&]()
                              {
                                outbox_->QueueFromChanges({MakeInstance(1, MD5_FIRST)}, 20,
                                                          NOW + 2000);
                                std::lock_guard<std::mutex> lock(mutex);
                                deleted = true;
                              }));
                        });
  worker.Start();
  for (int i = 0; i < 500 && worker.GetStatus().done == 0; i++)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  worker.Stop();
  {
    std::lock_guard<std::mutex> lock(mutex);
    ASSERT_TRUE(deleted);
  }
  ASSERT_EQ(worker.GetStatus().done, 1u);

  // The service no longer has the instance, so the item must be sent again.
  const OutboxItem item = GetItem(*outbox_, "orthanc-1");
  EXPECT_EQ(item.state, ItemState::Pending);
}
