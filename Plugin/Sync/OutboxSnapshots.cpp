// The outbox's snapshots, rollbacks, mirrored deletes and properties. These run rarely, so their
// statements are prepared on each call instead of being cached with the item statements.

#include "Sync/Outbox.h"

#include "Sync/OutboxRows.h"

#include <json/json.h>

namespace AzureDicom
{
namespace
{
const char* const ROLLBACK_COLUMNS =
    "id, snapshot_id, safety_snapshot_id, state, total, deleted, not_found, failed, job_id, "
    "message, created_at, updated_at";

const char* const SNAPSHOT_COLUMNS =
    "id, label, reason, created_at, settings, paused, last_created, last_queued, counts";

// Items whose copy at the service this plugin created after a snapshot's position, whatever
// their state now (an item stored again with other content is Pending while its copy stays).
const char* const CREATED_AFTER =
    "created_sequence > ?1 AND state != 'RolledBack' AND rollback_id = 0 "
    "AND delete_requested = 0";

// Sets an item whose copy the service deleted back to Pending as a new instance queued at ?1.
// Because it has no copy at the service, no rollback or conflict check applies to it.
const std::string RESET_AFTER_DELETION =
    "state = 'Pending', attempts = 0, status_code = 0, failure_reason = 0, warning_reason = 0, "
    "message = '', queued_at = ?1, updated_at = ?1, next_attempt_at = ?1, lease_until = 0, "
    "sent_at = 0, delete_requested = 0, rollback_id = 0, claimed_by = '', claim_id = 0, "
    "created_sequence = 0, content_md5 = '', content_changed = 0, content_conflict = 0";

// Items queued after a snapshot that wait to be sent. Sending items are not among them, because
// the service may confirm them.
const char* const QUEUED_AFTER = "id > ?1 AND state = 'Pending'";

// Items in flight whose ID is above ?1: with 0, every Sending item, whenever it was queued.
const char* const IN_FLIGHT = "id > ?1 AND state = 'Sending'";


bool ParseRollbackState(RollbackState& state, const std::string& name)
{
  for (RollbackState candidate : {RollbackState::Running, RollbackState::Success,
                                  RollbackState::Failure, RollbackState::Canceled})
  {
    if (name == ToString(candidate))
    {
      state = candidate;
      return true;
    }
  }
  return false;
}


std::string WriteCounts(const StateCounts& counts)
{
  Json::Value json(Json::objectValue);
  for (unsigned int i = 0; i < ITEM_STATE_COUNT; i++)
  {
    json[ToString(static_cast<ItemState>(i))] = Json::UInt64(counts.counts[i]);
  }

  Json::StreamWriterBuilder builder;
  builder["indentation"] = "";
  return Json::writeString(builder, json);
}


StateCounts ReadCounts(const std::string& text)
{
  StateCounts counts;
  Json::Value json;
  Json::CharReaderBuilder builder;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  std::string errors;
  if (reader->parse(text.data(), text.data() + text.size(), &json, &errors) && json.isObject())
  {
    for (unsigned int i = 0; i < ITEM_STATE_COUNT; i++)
    {
      const Json::Value& value = json[ToString(static_cast<ItemState>(i))];
      counts.counts[i] = value.isUInt64() ? value.asUInt64() : 0;
    }
  }
  return counts;
}


SnapshotRecord ReadSnapshot(const Query& query)
{
  SnapshotRecord snapshot;
  snapshot.id = query.GetInt64(0);
  snapshot.label = query.GetText(1);
  snapshot.reason = query.GetText(2);
  snapshot.createdAt = query.GetInt64(3);
  snapshot.settings = query.GetText(4);
  snapshot.paused = query.GetInt64(5) != 0;
  snapshot.lastCreated = query.GetInt64(6);
  snapshot.lastQueued = query.GetInt64(7);
  snapshot.counts = ReadCounts(query.GetText(8));
  return snapshot;
}


RollbackRecord ReadRollback(const Query& query, const std::string& path)
{
  RollbackRecord rollback;
  rollback.id = query.GetInt64(0);
  rollback.snapshotId = query.GetInt64(1);
  rollback.safetySnapshotId = query.GetInt64(2);
  if (!ParseRollbackState(rollback.state, query.GetText(3)))
  {
    throw Exception(ErrorCode::DatabaseError, "Invalid rollback state \"" + query.GetText(3) +
                                                  "\" in the outbox database " + path);
  }
  rollback.total = static_cast<uint64_t>(query.GetInt64(4));
  rollback.deleted = static_cast<uint64_t>(query.GetInt64(5));
  rollback.notFound = static_cast<uint64_t>(query.GetInt64(6));
  rollback.failed = static_cast<uint64_t>(query.GetInt64(7));
  rollback.jobId = query.GetText(8);
  rollback.message = query.GetText(9);
  rollback.createdAt = query.GetInt64(10);
  rollback.updatedAt = query.GetInt64(11);
  return rollback;
}


uint64_t CountRows(Database& database, const std::string& sql, int64_t parameter,
                   const std::string& action)
{
  StatementPtr statement = Prepare(database, sql);
  Query query(database, statement, action);
  if (parameter >= 0)
  {
    query.Bind(parameter);
  }
  return query.Step() ? static_cast<uint64_t>(query.GetInt64(0)) : 0;
}


std::vector<OutboxItem> SelectItems(Database& database, const std::string& where, int64_t parameter,
                                    size_t limit, const std::string& action)
{
  StatementPtr statement = Prepare(
      database, "SELECT " + ITEM_COLUMNS + " FROM items WHERE " + where + " ORDER BY id LIMIT ?2");
  Query query(database, statement, action);
  query.Bind(parameter).Bind(ToSqliteInteger(limit));

  std::vector<OutboxItem> items;
  while (query.Step())
  {
    items.push_back(ReadItem(query));
  }
  return items;
}


uint64_t RunUpdate(Database& database, const std::string& sql, const std::vector<int64_t>& integers,
                   const std::vector<std::string>& texts, const std::string& action)
{
  StatementPtr statement = Prepare(database, sql);
  Query query(database, statement, action);
  for (int64_t value : integers)
  {
    query.Bind(value);
  }
  for (const std::string& text : texts)
  {
    query.Bind(text);
  }
  return query.Run();
}
void ThrowIfRollbackRunning(Database& database, const std::string& action)
{
  if (CountRows(database, "SELECT COUNT(*) FROM rollbacks WHERE state = 'Running'", -1, action) > 0)
  {
    throw Exception(ErrorCode::Conflict,
                    "another rollback is running: wait until it ends (see \"Rollback\" in GET "
                    "/azure-dicom/status) or cancel its job");
  }
}


// Reads the plan of a rollback to the snapshot in the caller's transaction.
RollbackPlan ReadRollbackPlan(Database& database, const SnapshotRecord& snapshot, size_t firstCount,
                              bool deleteFromService, const std::string& action)
{
  RollbackPlan plan;
  plan.alreadyPresentKept =
      CountRows(database,
                "SELECT COUNT(*) FROM items WHERE state = 'AlreadyPresent' AND "
                "created_sequence = 0 AND sent_at > ?1",
                snapshot.createdAt, action);
  if (!deleteFromService)
  {
    return plan;
  }

  {
    StatementPtr statement =
        Prepare(database, std::string("SELECT sent_service_url, sent_api_version, sent_partition, "
                                      "COUNT(*), SUM(size) FROM items WHERE ") +
                              CREATED_AFTER +
                              " GROUP BY sent_service_url, sent_api_version, sent_partition "
                              "ORDER BY sent_service_url, sent_api_version, sent_partition");
    Query query(database, statement, action);
    query.Bind(snapshot.lastCreated);
    while (query.Step())
    {
      DestinationShare share;
      share.destination = Destination{query.GetText(0), query.GetText(1), query.GetText(2)};
      share.instances = static_cast<uint64_t>(query.GetInt64(3));
      share.bytes = static_cast<uint64_t>(query.GetInt64(4));
      plan.instances += share.instances;
      plan.bytes += share.bytes;
      plan.destinations.push_back(share);
    }
  }

  plan.firstItems = SelectItems(database, CREATED_AFTER, snapshot.lastCreated, firstCount, action);
  plan.droppedPending =
      CountRows(database, std::string("SELECT COUNT(*) FROM items WHERE ") + QUEUED_AFTER,
                snapshot.lastQueued, action);
  plan.firstDropped = SelectItems(database, QUEUED_AFTER, snapshot.lastQueued, firstCount, action);

  plan.inFlight =
      CountRows(database, std::string("SELECT COUNT(*) FROM items WHERE ") + IN_FLIGHT, 0, action);
  plan.firstInFlight = SelectItems(database, IN_FLIGHT, 0, firstCount, action);
  return plan;
}
}  // namespace


const char* ToString(RollbackState state)
{
  switch (state)
  {
    case RollbackState::Running:
      return "Running";
    case RollbackState::Success:
      return "Success";
    case RollbackState::Failure:
      return "Failure";
    case RollbackState::Canceled:
      return "Canceled";
    default:
      return "Unknown";
  }
}


std::map<std::string, std::string> Outbox::GetConfirmedDigests(
    const std::vector<std::string>& orthancIds)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "read the digests of " + std::to_string(orthancIds.size()) + " items";
  Transaction transaction(database, TransactionMode::Read, action);

  StatementPtr statement = Prepare(database,
                                   "SELECT content_md5 FROM items WHERE orthanc_id = ?1 AND state "
                                   "IN ('Mirrored', 'AlreadyPresent') AND content_md5 != ''");
  std::map<std::string, std::string> digests;
  for (const std::string& orthancId : orthancIds)
  {
    Query query(database, statement, action);
    query.Bind(orthancId);
    if (query.Step())
    {
      digests[orthancId] = query.GetText(0);
    }
  }

  transaction.Commit();
  return digests;
}


StateCounts Outbox::CountInstances(const std::vector<std::string>& orthancIds,
                                   uint64_t& notQueued, uint64_t& bytes, uint64_t& conflicts)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action =
      "count the items of " + std::to_string(orthancIds.size()) + " instances";
  Transaction transaction(database, TransactionMode::Read, action);

  StatementPtr statement =
      Prepare(database, "SELECT state, size, content_conflict FROM items WHERE orthanc_id = ?1");
  StateCounts counts;
  notQueued = 0;
  bytes = 0;
  conflicts = 0;
  for (const std::string& orthancId : orthancIds)
  {
    Query query(database, statement, action);
    query.Bind(orthancId);
    if (query.Step())
    {
      counts.counts[static_cast<size_t>(query.GetState(0))]++;
      bytes += static_cast<uint64_t>(query.GetInt64(1));
      conflicts += query.GetInt64(2) != 0 ? 1 : 0;
    }
    else
    {
      notQueued++;
    }
  }

  transaction.Commit();
  return counts;
}


uint64_t Outbox::CountConflicts()
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "count the conflicts";
  Transaction transaction(database, TransactionMode::Read, action);
  const uint64_t count =
      CountRows(database, "SELECT COUNT(*) FROM items WHERE content_conflict = 1", -1, action);
  transaction.Commit();
  return count;
}


std::string Outbox::GetProperty(const std::string& name, const std::string& fallback)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "read the property " + name;
  Transaction transaction(database, TransactionMode::Read, action);

  std::string value = fallback;
  {
    StatementPtr statement = Prepare(database, "SELECT value FROM properties WHERE name = ?1");
    Query query(database, statement, action);
    query.Bind(name);
    if (query.Step())
    {
      value = query.GetText(0);
    }
  }

  transaction.Commit();
  return value;
}


void Outbox::SetProperty(const std::string& name, const std::string& value)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "store the property " + name;
  Transaction transaction(database, TransactionMode::Write, action);

  StatementPtr statement = Prepare(database,
                                   "INSERT INTO properties (name, value) VALUES (?1, ?2) "
                                   "ON CONFLICT (name) DO UPDATE SET value = excluded.value");
  Query(database, statement, action).Bind(name).Bind(value).Run();

  transaction.Commit();
}


void Outbox::InsertSnapshot(SnapshotRecord& snapshot)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "take a snapshot";
  Transaction transaction(database, TransactionMode::Write, action);

  // The same lock as RecordOutcomes, so that no node records a creation between the two reads.
  database.LockForTransaction(CREATED_SEQUENCE_LOCK_KEY, action);
  snapshot.lastCreated = static_cast<int64_t>(
      CountRows(database,
                "SELECT COALESCE(MAX(CAST(value AS INTEGER)), 0) FROM properties "
                "WHERE name = 'CreatedSequence'",
                -1, action));
  snapshot.lastQueued = static_cast<int64_t>(
      CountRows(database, "SELECT COALESCE(MAX(id), 0) FROM items", -1, action));

  snapshot.counts = StateCounts();
  {
    StatementPtr statement = Prepare(database, "SELECT state, COUNT(*) FROM items GROUP BY state");
    Query query(database, statement, action);
    while (query.Step())
    {
      snapshot.counts.counts[static_cast<size_t>(query.GetState(0))] =
          static_cast<uint64_t>(query.GetInt64(1));
    }
  }

  StatementPtr insert = Prepare(database,
                                "INSERT INTO snapshots (label, reason, created_at, settings, "
                                "paused, last_created, last_queued, counts) "
                                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id");
  {
    Query query(database, insert, action);
    query.Bind(snapshot.label)
        .Bind(snapshot.reason)
        .Bind(snapshot.createdAt)
        .Bind(snapshot.settings)
        .Bind(static_cast<int64_t>(snapshot.paused ? 1 : 0))
        .Bind(snapshot.lastCreated)
        .Bind(snapshot.lastQueued)
        .Bind(WriteCounts(snapshot.counts));
    snapshot.id = query.Step() ? query.GetInt64(0) : 0;
  }

  transaction.Commit();
}


bool Outbox::GetSnapshot(SnapshotRecord& snapshot, int64_t id)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "read the snapshot " + std::to_string(id);
  Transaction transaction(database, TransactionMode::Read, action);

  bool found = false;
  {
    StatementPtr statement = Prepare(
        database, std::string("SELECT ") + SNAPSHOT_COLUMNS + " FROM snapshots WHERE id = ?1");
    Query query(database, statement, action);
    query.Bind(id);
    if (query.Step())
    {
      snapshot = ReadSnapshot(query);
      found = true;
    }
  }

  transaction.Commit();
  return found;
}


std::vector<SnapshotRecord> Outbox::ListSnapshots()
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "list the snapshots";
  Transaction transaction(database, TransactionMode::Read, action);

  std::vector<SnapshotRecord> snapshots;
  {
    StatementPtr statement = Prepare(
        database, std::string("SELECT ") + SNAPSHOT_COLUMNS + " FROM snapshots ORDER BY id");
    Query query(database, statement, action);
    while (query.Step())
    {
      snapshots.push_back(ReadSnapshot(query));
    }
  }

  transaction.Commit();
  return snapshots;
}


RollbackPlan Outbox::PlanRollback(const SnapshotRecord& snapshot, size_t firstCount,
                                  bool deleteFromService)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "plan the rollback to snapshot " + std::to_string(snapshot.id);
  Transaction transaction(database, TransactionMode::Read, action);
  const RollbackPlan plan =
      ReadRollbackPlan(database, snapshot, firstCount, deleteFromService, action);
  transaction.Commit();
  return plan;
}


void Outbox::CheckNoRunningRollback()
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "look for a running rollback";
  Transaction transaction(database, TransactionMode::Read, action);
  ThrowIfRollbackRunning(database, action);
  transaction.Commit();
}


int64_t Outbox::StartRollback(const SnapshotRecord& target, int64_t safetySnapshotId,
                              bool deleteFromService, int64_t now, RollbackPlan* plan,
                              size_t firstCount)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "start the rollback to snapshot " + std::to_string(target.id);
  Transaction transaction(database, TransactionMode::Write, action);

  // Two nodes must not both find no running rollback and start one.
  database.LockForTransaction(ROLLBACK_LOCK_KEY, action);
  ThrowIfRollbackRunning(database, action);

  if (plan != nullptr)
  {
    *plan = ReadRollbackPlan(database, target, firstCount, deleteFromService, action);
  }

  StatementPtr insert =
      Prepare(database,
              "INSERT INTO rollbacks (snapshot_id, safety_snapshot_id, state, "
              "total, created_at, updated_at) VALUES (?1, ?2, 'Running', 0, ?3, ?3) "
              "RETURNING id");
  int64_t rollbackId = 0;
  {
    Query query(database, insert, action);
    query.Bind(target.id).Bind(safetySnapshotId).Bind(now);
    rollbackId = query.Step() ? query.GetInt64(0) : 0;
  }

  uint64_t total = 0;
  if (deleteFromService)
  {
    total = RunUpdate(
        database,
        std::string("UPDATE items SET rollback_id = ?2, updated_at = ?3 WHERE ") + CREATED_AFTER,
        {target.lastCreated, rollbackId, now}, {}, action);

    RunUpdate(database,
              std::string("UPDATE items SET state = 'Skipped', lease_until = 0, updated_at = ?2, "
                          "message = ?3 WHERE ") +
                  QUEUED_AFTER,
              {target.lastQueued, now},
              {"dropped by the rollback to snapshot " + std::to_string(target.id) +
               " before it was sent"},
              action);
  }

  RunUpdate(database, "UPDATE rollbacks SET total = ?1 WHERE id = ?2",
            {static_cast<int64_t>(total), rollbackId}, {}, action);

  transaction.Commit();
  return rollbackId;
}


std::vector<OutboxItem> Outbox::ListRollbackItems(int64_t rollbackId, size_t limit)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "list the items of rollback " + std::to_string(rollbackId);
  Transaction transaction(database, TransactionMode::Read, action);
  std::vector<OutboxItem> items = SelectItems(
      database, "rollback_id = ?1 AND state != 'RolledBack'", rollbackId, limit, action);
  transaction.Commit();
  return items;
}


void Outbox::RecordRemoval(int64_t rollbackId, int64_t itemId, RemovalOutcome outcome,
                           const std::string& message, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "record the deletion of item " + std::to_string(itemId);
  Transaction transaction(database, TransactionMode::Write, action);

  // Two jobs can run the same rollback after a restart: only the first to record an item counts.
  uint64_t changed = 0;
  if (outcome == RemovalOutcome::Failed)
  {
    changed = RunUpdate(database,
                        "UPDATE items SET rollback_id = 0, updated_at = ?3, message = ?4 "
                        "WHERE id = ?1 AND rollback_id = ?2",
                        {itemId, rollbackId, now}, {message}, action);
  }
  else
  {
    changed = RunUpdate(database,
                        "UPDATE items SET state = 'RolledBack', created_sequence = 0, "
                        "content_conflict = 0, updated_at = ?3, message = ?4 "
                        "WHERE id = ?1 AND rollback_id = ?2 AND state != 'RolledBack'",
                        {itemId, rollbackId, now}, {message}, action);
  }

  if (changed > 0)
  {
    const char* column = outcome == RemovalOutcome::Deleted    ? "deleted"
                         : outcome == RemovalOutcome::NotFound ? "not_found"
                                                               : "failed";
    RunUpdate(database,
              std::string("UPDATE rollbacks SET ") + column + " = " + column +
                  " + 1, updated_at = ?1 WHERE id = ?2",
              {now, rollbackId}, {}, action);
  }

  transaction.Commit();
}


void Outbox::FinishRollback(int64_t rollbackId, RollbackState state, const std::string& message,
                            int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "finish the rollback " + std::to_string(rollbackId);
  Transaction transaction(database, TransactionMode::Write, action);

  if (state == RollbackState::Canceled)
  {
    RunUpdate(database,
              "UPDATE items SET rollback_id = 0, updated_at = ?2 WHERE rollback_id = ?1 AND "
              "state != 'RolledBack'",
              {rollbackId, now}, {}, action);
  }

  StatementPtr statement = Prepare(database,
                                   "UPDATE rollbacks SET state = ?1, message = ?2, updated_at = ?3 "
                                   "WHERE id = ?4 AND state = 'Running'");
  Query(database, statement, action)
      .Bind(std::string(ToString(state)))
      .Bind(message)
      .Bind(now)
      .Bind(rollbackId)
      .Run();

  transaction.Commit();
}


void Outbox::SetRollbackJob(int64_t rollbackId, const std::string& jobId)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "record the job of rollback " + std::to_string(rollbackId);
  Transaction transaction(database, TransactionMode::Write, action);
  RunUpdate(database, "UPDATE rollbacks SET job_id = ?2 WHERE id = ?1", {rollbackId}, {jobId},
            action);
  transaction.Commit();
}


bool Outbox::GetRollback(RollbackRecord& rollback, int64_t rollbackId)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "read the rollback " + std::to_string(rollbackId);
  Transaction transaction(database, TransactionMode::Read, action);

  bool found = false;
  {
    StatementPtr statement = Prepare(
        database, std::string("SELECT ") + ROLLBACK_COLUMNS + " FROM rollbacks WHERE id = ?1");
    Query query(database, statement, action);
    query.Bind(rollbackId);
    if (query.Step())
    {
      rollback = ReadRollback(query, database.GetName());
      found = true;
    }
  }

  transaction.Commit();
  return found;
}


bool Outbox::GetLastRollback(RollbackRecord& rollback)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "read the last rollback";
  Transaction transaction(database, TransactionMode::Read, action);

  bool found = false;
  {
    StatementPtr statement = Prepare(database, std::string("SELECT ") + ROLLBACK_COLUMNS +
                                                   " FROM rollbacks ORDER BY id DESC LIMIT 1");
    Query query(database, statement, action);
    if (query.Step())
    {
      rollback = ReadRollback(query, database.GetName());
      found = true;
    }
  }

  transaction.Commit();
  return found;
}


std::vector<int64_t> Outbox::ListRunningRollbacks()
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "list the running rollbacks";
  Transaction transaction(database, TransactionMode::Read, action);

  std::vector<int64_t> ids;
  {
    StatementPtr statement =
        Prepare(database, "SELECT id FROM rollbacks WHERE state = 'Running' ORDER BY id");
    Query query(database, statement, action);
    while (query.Step())
    {
      ids.push_back(query.GetInt64(0));
    }
  }

  transaction.Commit();
  return ids;
}


bool Outbox::RequestDeletion(const std::string& orthancId, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "request the deletion of " + orthancId;
  Transaction transaction(database, TransactionMode::Write, action);

  // A request for an item whose deletion is already requested leaves updated_at alone, because
  // CompleteDeletion() takes a changed row for a new store of the instance.
  StatementPtr statement = Prepare(database,
                                   "UPDATE items SET delete_requested = 1, updated_at = "
                                   "CASE WHEN delete_requested = 1 THEN updated_at ELSE ?1 END "
                                   "WHERE orthanc_id = ?2 AND (created_sequence > 0 OR "
                                   "state = 'Sending') AND state != 'RolledBack' AND "
                                   "rollback_id = 0");
  const uint64_t changed = Query(database, statement, action).Bind(now).Bind(orthancId).Run();

  transaction.Commit();
  return changed > 0;
}


std::vector<OutboxItem> Outbox::ListDeletionRequests(size_t limit)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "list the deletion requests";
  Transaction transaction(database, TransactionMode::Read, action);
  std::vector<OutboxItem> items =
      SelectItems(database, "delete_requested = 1 AND state != 'Sending' AND id > ?1", 0, limit,
                  action);
  transaction.Commit();
  return items;
}


uint64_t Outbox::CountDeletionRequests()
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "count the deletion requests";
  Transaction transaction(database, TransactionMode::Read, action);
  const uint64_t count =
      CountRows(database, "SELECT COUNT(*) FROM items WHERE delete_requested = 1", -1, action);
  transaction.Commit();
  return count;
}


bool Outbox::CompleteDeletion(const OutboxItem& item, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "remove the deleted item " + std::to_string(item.id);
  Transaction transaction(database, TransactionMode::Write, action);

  // The follower records each new file of the instance in the row (keepDeletedItem), so a row
  // that changed since it was listed belongs to an instance that Orthanc stored again.
  const uint64_t removed = RunUpdate(database,
                                     "DELETE FROM items WHERE id = ?1 AND delete_requested = 1 "
                                     "AND updated_at = ?2 AND file_uuid = ?3",
                                     {item.id, item.updatedAt}, {item.instance.fileUuid}, action);
  if (removed == 0)
  {
    RunUpdate(
        database,
        "UPDATE items SET " + RESET_AFTER_DELETION + " WHERE id = ?2 AND delete_requested = 1",
        {now, item.id}, {}, action);
  }

  transaction.Commit();
  return removed > 0;
}


void Outbox::RequeueAfterDeletion(const OutboxItem& item, const NewInstance& instance, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "queue the stored instance " + instance.orthancId + " again";
  Transaction transaction(database, TransactionMode::Write, action);
  RunUpdate(database,
            "UPDATE items SET " + RESET_AFTER_DELETION +
                ", size = ?3, file_uuid = ?4, file_md5 = ?5 WHERE id = ?2 AND delete_requested = 1",
            {now, item.id, ToSqliteInteger(instance.size)}, {instance.fileUuid, instance.fileMd5},
            action);
  transaction.Commit();
}


void Outbox::AbandonDeletion(int64_t itemId, const std::string& message, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "give up the deletion of item " + std::to_string(itemId);
  Transaction transaction(database, TransactionMode::Write, action);
  RunUpdate(database,
            "UPDATE items SET delete_requested = 0, updated_at = ?2, message = ?3 WHERE id = ?1",
            {itemId, now}, {message}, action);
  transaction.Commit();
}


uint64_t Outbox::DropDeletionRequests(int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "drop the deletion requests";
  Transaction transaction(database, TransactionMode::Write, action);

  // An instance that Orthanc stored again with other content while its deletion waited: the new
  // file goes out as a changed instance, which OnConflict decides on.
  const uint64_t requeued =
      RunUpdate(database,
                "UPDATE items SET " + RESET_TO_PENDING +
                    ", content_conflict = 0 WHERE delete_requested = 1 AND content_changed = 1 "
                    "AND state IN ('Mirrored', 'AlreadyPresent')",
                {now}, {}, action);
  const uint64_t cleared = RunUpdate(
      database, "UPDATE items SET delete_requested = 0, updated_at = ?1 WHERE delete_requested = 1",
      {now}, {}, action);
  transaction.Commit();
  return requeued + cleared;
}


void Outbox::ForgetCreation(int64_t itemId, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action =
      "record the deletion of the old copy of item " + std::to_string(itemId);
  Transaction transaction(database, TransactionMode::Write, action);
  RunUpdate(database, "UPDATE items SET created_sequence = 0, updated_at = ?2 WHERE id = ?1",
            {itemId, now}, {}, action);
  transaction.Commit();
}
}  // namespace AzureDicom
