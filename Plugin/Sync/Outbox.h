#pragma once

#include "OutboxItem.h"

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct sqlite3;

namespace AzureDicom
{
struct StateCounts
{
  std::array<uint64_t, ITEM_STATE_COUNT> counts{};  // indexed by ItemState

  uint64_t Get(ItemState state) const
  {
    return counts[static_cast<size_t>(state)];
  }
};


// How a back-fill treats an instance that is already in the outbox.
enum class QueueMode
{
  InsertMissing,  // leave existing items as they are
  RequeueFailed   // also return Failed, Skipped and RolledBack items to Pending, attempts reset
};


struct QueueResult
{
  uint64_t inserted = 0;
  uint64_t requeued = 0;
  uint64_t unchanged = 0;
};


// A study's items summed up, for GET /azure-dicom/studies/{id}.
struct StudySummary
{
  std::string orthancStudyId;
  std::string studyInstanceUid;
  StateCounts counts;
  uint64_t instances = 0;
  uint64_t bytes = 0;
};


// The durable record of every instance to mirror: a SQLite database in WAL mode. Every method is
// one transaction and is safe to call from several threads. Errors throw Exception(DatabaseError)
// with the SQLite message and the file path.
class Outbox
{
public:
  // Opens or creates the database file (mode 0600) and its schema.
  explicit Outbox(const std::string& path);
  ~Outbox();

  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // The last change sequence of Orthanc that the follower committed, or -1 before the first.
  int64_t GetFollowerSequence();

  // Inserts the instances that are not in the outbox yet as Pending, returns those whose item
  // ended Failed, Skipped or RolledBack to Pending (Orthanc stored them again), and stores the
  // sequence, in one transaction: a crash between the two cannot lose an instance.
  QueueResult QueueFromChanges(const std::vector<NewInstance>& instances, int64_t lastSequence,
                               int64_t now);

  // Queues instances for a back-fill or a "Mirror to Azure" request.
  QueueResult Queue(const std::vector<NewInstance>& instances, QueueMode mode, int64_t now);

  // Returns expired Sending items to Pending, then claims Pending items that are due as Sending
  // until leaseUntil: at most maxCount items and, but for a first item that is larger by itself,
  // at most maxBytes in total. Items are taken earliest nextAttemptAt first, then in queue order,
  // and the batch ends at the first item that does not fit. An empty result means nothing is due.
  std::vector<OutboxItem> ClaimBatch(size_t maxCount, uint64_t maxBytes, int64_t now,
                                     int64_t leaseUntil);

  // Returns the Sending items whose lease has expired to Pending; returns how many.
  uint64_t ExpireLeases(int64_t now);

  // Returns every Sending item to Pending. Called at start-up, before any worker of this process
  // claims a batch, because no other process shares an SQLite outbox.
  uint64_t ReleaseAllLeases(int64_t now);

  // Records the outcome of each item. An outcome whose state is Pending schedules a retry at
  // nextAttemptAt, and countAttempt adds one to the item's attempts. Only items that are
  // still Sending change: an item whose lease expired, or that was released, retried or skipped
  // meanwhile, keeps its state. An outcome in state Sending throws InternalError.
  void RecordOutcomes(const std::vector<ItemOutcome>& outcomes, int64_t now);

  // Returns claimed items to Pending without counting an attempt (destination-wide errors). Items
  // that are no longer Sending are left alone.
  void Release(const std::vector<int64_t>& ids, int64_t nextAttemptAt, int64_t now);

  StateCounts CountByState();

  // queuedAt of the oldest Pending or Sending item, or 0 when there is none.
  int64_t GetOldestPendingTime();

  // Items with id > sinceId in id order, optionally of one state only.
  std::vector<OutboxItem> ListItems(const ItemState* state, int64_t sinceId, size_t limit);

  // Looks an item up by Orthanc instance ID or SOP Instance UID.
  bool FindItem(OutboxItem& item, const std::string& orthancIdOrSopInstanceUid);

  // Sums up a study's items, found by Orthanc study ID or Study Instance UID.
  bool GetStudySummary(StudySummary& summary, const std::string& orthancIdOrStudyInstanceUid);

  // Returns the items of one state to Pending, due now, with attempts, status code, reasons and
  // message cleared and queuedAt set to now, so that the oldest pending age counts from the retry.
  // Returns how many. Only Failed, Skipped and RolledBack items are retried, so any other state returns 0.
  uint64_t RetryState(ItemState state, int64_t now);

  // Returns the Failed, Skipped or RolledBack items among these Orthanc instance IDs to Pending,
  // as RetryState does. Returns how many.
  uint64_t RetryInstances(const std::vector<std::string>& orthancIds, int64_t now);

  // Marks the item of an instance deleted from Orthanc before it was sent as Skipped. An item that
  // is neither Pending nor Sending is left alone.
  void MarkSkipped(int64_t id, const std::string& message, int64_t now);

private:
  struct Statements;

  // Inserts the instances or, with RequeueFailed, returns their ended items to Pending. The
  // caller holds mutex_ and has begun the transaction.
  QueueResult QueueInTransaction(const std::vector<NewInstance>& instances, QueueMode mode,
                                 int64_t now);

  struct DatabaseCloser
  {
    void operator()(sqlite3* db) const;
  };

  void CreateSchema();

  std::mutex mutex_;
  std::string path_;
  std::unique_ptr<sqlite3, DatabaseCloser> db_;  // declared before statements_, closed after them
  std::unique_ptr<Statements> statements_;
};
}  // namespace AzureDicom
