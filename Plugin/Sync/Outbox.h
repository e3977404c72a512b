#pragma once

#include "OutboxItem.h"

#include <array>
#include <map>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace AzureDicom
{
class Database;


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


// A named point in time that a rollback returns to.
struct SnapshotRecord
{
  int64_t id = 0;
  std::string label;
  std::string reason;    // "Manual", "SettingsChange" or "Rollback"
  int64_t createdAt = 0;
  std::string settings;  // the redacted effective settings, as JSON text
  bool paused = false;
  int64_t lastCreated = 0;  // the creation sequence reached: later creations are rolled back
  int64_t lastQueued = 0;   // the highest item ID: later items still pending are dropped
  StateCounts counts;
};


// The instances to delete at one destination.
struct DestinationShare
{
  Destination destination;
  uint64_t instances = 0;
  uint64_t bytes = 0;
};


// The effect that rolling back to a snapshot would have on the outbox and the service.
struct RollbackPlan
{
  std::vector<DestinationShare> destinations;
  uint64_t instances = 0;  // to delete at the service
  uint64_t bytes = 0;
  std::vector<OutboxItem> firstItems;
  uint64_t droppedPending = 0;  // Pending items queued after the snapshot
  std::vector<OutboxItem> firstDropped;
  // Sending items of any node. The rollback does not mark them, because the service may still
  // confirm them.
  uint64_t inFlight = 0;
  std::vector<OutboxItem> firstInFlight;
  uint64_t alreadyPresentKept = 0;  // confirmed after the snapshot but not created by the plugin
};


// One Orthanc node that uses the outbox, for GET /azure-dicom/status.
struct NodeRecord
{
  std::string name;
  int64_t lastSeen = 0;  // the last claim, outcome or heartbeat, in ms since the epoch
  uint64_t claimed = 0;  // items of the node in Sending now
  uint64_t sent = 0;     // outcomes Mirrored or AlreadyPresent that the node recorded
};


enum class RollbackState
{
  Running,
  Success,
  Failure,
  Canceled
};

const char* ToString(RollbackState state);


struct RollbackRecord
{
  int64_t id = 0;
  int64_t snapshotId = 0;
  int64_t safetySnapshotId = 0;  // taken just before the rollback, to undo it
  RollbackState state = RollbackState::Running;
  uint64_t total = 0;
  uint64_t deleted = 0;
  uint64_t notFound = 0;  // already gone from the service: counts as done
  uint64_t failed = 0;
  std::string jobId;
  std::string message;
  int64_t createdAt = 0;
  int64_t updatedAt = 0;

  uint64_t GetRemaining() const
  {
    const uint64_t done = deleted + notFound + failed;
    return done < total ? total - done : 0;
  }
};


// The outcome of deleting one item at the service for a rollback.
enum class RemovalOutcome
{
  Deleted,
  NotFound,
  Failed
};


// The durable record of every instance to mirror: an SQLite file in WAL mode for one Orthanc, or
// a PostgreSQL database that several Orthanc nodes share. Every method is one transaction and is
// safe to call from several threads. Errors throw Exception(DatabaseError) with the database's
// message and its path or connection string (without password).
class Outbox
{
public:
  // Opens or creates the database and its schema: the SQLite file at this path (mode 0600), or
  // the PostgreSQL database of a postgresql:// or key/value connection string. nodeName marks
  // the items that this process claims; it must differ between the nodes of one database.
  explicit Outbox(const std::string& database, const std::string& nodeName = "");
  ~Outbox();

  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  const std::string& GetNodeName() const
  {
    return nodeName_;
  }

  // True for a PostgreSQL outbox, which other nodes may share.
  bool IsShared() const;

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
  // With PostgreSQL, items that another node is claiming at the same moment are skipped (FOR
  // UPDATE SKIP LOCKED). Each claim gets an ID that only this Outbox object stores.
  std::vector<OutboxItem> ClaimBatch(size_t maxCount, uint64_t maxBytes, int64_t now,
                                     int64_t leaseUntil);

  // Returns the Sending items whose lease has expired to Pending; returns how many.
  uint64_t ExpireLeases(int64_t now);

  // Returns this node's Sending items to Pending; returns how many. Called at start-up, before
  // any worker of this process claims a batch. With SQLite, which no other process shares, every
  // Sending item goes back.
  uint64_t ReleaseAllLeases(int64_t now);

  // Records the outcome of each item. An outcome whose state is Pending schedules a retry at
  // nextAttemptAt, and countAttempt adds one to the item's attempts. Only items still Sending
  // under this object's claim change: an item whose lease expired, that another claim or node
  // holds now, or that was released, retried or skipped meanwhile, keeps its state. An outcome in
  // state Sending throws InternalError. Confirmed outcomes count in this node's Sent.
  // NOTE: the claim is looked up by item ID, so when this object claims an item again after its
  // own lease expired, a late outcome of the first claim still applies.
  void RecordOutcomes(const std::vector<ItemOutcome>& outcomes, int64_t now);

  // Returns claimed items to Pending without counting an attempt (destination-wide errors). Items
  // that are no longer Sending under this object's claim are left alone.
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

  // Returns the hex MD5 recorded for each of these instances whose item the service confirmed
  // (Mirrored or AlreadyPresent), keyed by Orthanc ID. Others are absent.
  std::map<std::string, std::string> GetConfirmedDigests(const std::vector<std::string>& orthancIds);

  uint64_t CountConflicts();

  // Counts the items of these Orthanc instances per state; instances without an item count in
  // notQueued. bytes sums the sizes of the items found, conflicts counts their ContentConflict.
  StateCounts CountInstances(const std::vector<std::string>& orthancIds, uint64_t& notQueued,
                             uint64_t& bytes, uint64_t& conflicts);

  // A property of the plugin (runtime settings), or fallback when it was never set.
  std::string GetProperty(const std::string& name, const std::string& fallback);
  void SetProperty(const std::string& name, const std::string& value);

  // Stores a snapshot with the outbox position and counts read in the same transaction; fills in
  // snapshot.id, the position and the counts.
  void InsertSnapshot(SnapshotRecord& snapshot);
  bool GetSnapshot(SnapshotRecord& snapshot, int64_t id);
  std::vector<SnapshotRecord> ListSnapshots();

  // Lists what a rollback to the snapshot would delete and drop now, and the items in flight,
  // with at most firstCount items of each kind. Without deleteFromService, the rollback deletes
  // and drops nothing, so the plan lists only AlreadyPresentKept.
  RollbackPlan PlanRollback(const SnapshotRecord& snapshot, size_t firstCount,
                            bool deleteFromService = true);

  // Throws Exception(Conflict) while a rollback runs. StartRollback() checks again, in its
  // transaction, because another node may start one in between.
  void CheckNoRunningRollback();

  // In one transaction: records a rollback to target and, unless deleteFromService is false,
  // marks each item of the plan for deletion and the Pending items queued after the snapshot
  // as Skipped. Sending items are left alone. When plan is given, fills it, with at most
  // firstCount items of each kind, from the same transaction, so that it lists what was marked.
  // Returns the rollback's ID. Throws Exception(Conflict) while another rollback runs.
  int64_t StartRollback(const SnapshotRecord& target, int64_t safetySnapshotId,
                        bool deleteFromService, int64_t now, RollbackPlan* plan = nullptr,
                        size_t firstCount = 0);

  // The items that the rollback has yet to delete, in ID order. The dispatcher claims none of
  // them meanwhile.
  std::vector<OutboxItem> ListRollbackItems(int64_t rollbackId, size_t limit);

  // Records the deletion of an item: Deleted and NotFound make it RolledBack, Failed leaves it
  // in its state with the message and takes it out of the rollback.
  void RecordRemoval(int64_t rollbackId, int64_t itemId, RemovalOutcome outcome,
                     const std::string& message, int64_t now);

  // Ends a rollback. Canceled also takes its remaining items out of it.
  void FinishRollback(int64_t rollbackId, RollbackState state, const std::string& message,
                      int64_t now);
  void SetRollbackJob(int64_t rollbackId, const std::string& jobId);
  bool GetRollback(RollbackRecord& rollback, int64_t rollbackId);
  bool GetLastRollback(RollbackRecord& rollback);
  std::vector<int64_t> ListRunningRollbacks();

  // Marks the item of an instance deleted in Orthanc for deletion at the service, if this plugin
  // created its copy there or is sending it now. Returns true when it was marked.
  bool RequestDeletion(const std::string& orthancId, int64_t now);

  // The items to delete at the service, leaving out those still being sent.
  std::vector<OutboxItem> ListDeletionRequests(size_t limit);
  uint64_t CountDeletionRequests();

  // Removes the item, as ListDeletionRequests() returned it, after the service deleted its copy.
  // An item that changed since then (Orthanc stored the instance again) is returned to Pending as
  // a new instance instead. Returns true when the item was removed.
  bool CompleteDeletion(const OutboxItem& item, int64_t now);

  // Returns the item to Pending as a new instance with the file that Orthanc stores now, after
  // the service deleted the copy of an older file (an overwrite or a new store of the instance).
  void RequeueAfterDeletion(const OutboxItem& item, const NewInstance& instance, int64_t now);

  // Gives up every deletion request, for a start with MirrorDeletes false: the copies stay at the
  // service, and an instance stored again meanwhile with other content is queued as changed.
  // Returns the number of requests given up.
  uint64_t DropDeletionRequests(int64_t now);

  // Keeps the item but gives up its deletion, with the reason in its message.
  void AbandonDeletion(int64_t itemId, const std::string& message, int64_t now);

  // Records that this plugin's copy of the item at the service was deleted before a new one is
  // sent (OnConflict Replace without an upsert).
  void ForgetCreation(int64_t itemId, int64_t now);

  // Records that this node is alive (NodeRecord::lastSeen).
  void RecordHeartbeat(int64_t now);

  // The nodes that used the outbox, in name order, with the items that each one has claimed now.
  std::vector<NodeRecord> ListNodes();

  // Takes, or checks that this node still has, the right to follow Orthanc's change log: a
  // PostgreSQL session-level advisory lock on a connection of its own, which the server releases
  // when this node dies. Returns false while another node has it. Always true with SQLite.
  bool TryHoldFollowerLock();
  void ReleaseFollowerLock();

  // The last failure to reach the PostgreSQL server, "" while connected.
  std::string GetConnectionError() const;

private:
  struct Statements;

  // The ID of this object's claim of the item, 0 when it holds none. The caller holds mutex_.
  int64_t GetClaimId(int64_t itemId) const;

  // Inserts the instances or, with RequeueFailed, returns their ended items to Pending. The
  // caller holds mutex_ and has begun the transaction.
  QueueResult QueueInTransaction(const std::vector<NewInstance>& instances, QueueMode mode,
                                 int64_t now);

  void CreateSchema();

  std::mutex mutex_;
  std::string nodeName_;
  std::unique_ptr<Database> db_;  // declared before statements_, closed after them
  std::unique_ptr<Statements> statements_;
  int64_t nextClaimId_ = 1;
  std::map<int64_t, int64_t> claims_;  // item ID -> ID of this object's claim, under mutex_
};
}  // namespace AzureDicom
