#include "Sync/Outbox.h"

#include "Sync/OutboxRows.h"

#include "Common/Clock.h"
#include "Common/Exception.h"

#include <limits>
#include <random>

namespace AzureDicom
{
namespace
{
// The version of the schema that this code creates (SQLite's PRAGMA user_version, PostgreSQL's
// schema_version table). A database with a higher version was written by a newer plugin, and
// this one rejects it rather than corrupt it.
const int64_t SCHEMA_VERSION = 5;


const char* const FOLLOWER_SEQUENCE_PROPERTY = "FollowerSequence";
const int64_t NO_FOLLOWER_SEQUENCE = -1;

// The number of copies this plugin has created at the service: each Mirrored outcome takes the
// next value, and a snapshot records the last one as its position.
const char* const CREATED_SEQUENCE_PROPERTY = "CreatedSequence";

// The state column stores the names of ToString(ItemState), so that the file reads well in the
// sqlite3 shell and does not depend on the order of the enum.
//
// ClaimBatch reads items_claim in due order. ListItems with a state and the retries use
// items_state_id. With items_state_queued, the oldest Pending or Sending item takes one index seek
// instead of a scan of the backlog.
const char* const SCHEMA_SQL = R"sql(
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
)sql";

// Version 2: where each item was confirmed and whether this plugin created it there, the
// content digest for OnConflict, the marks of rollbacks and mirrored deletes, and the snapshot
// and rollback tables. A version 1 file gets these columns with their defaults, so its items
// count as not created by this plugin and no rollback deletes them.
const char* const MIGRATION_V2_SQL = R"sql(
ALTER TABLE items ADD COLUMN sent_service_url TEXT NOT NULL DEFAULT '';
ALTER TABLE items ADD COLUMN sent_api_version TEXT NOT NULL DEFAULT '';
ALTER TABLE items ADD COLUMN sent_partition TEXT NOT NULL DEFAULT '';
ALTER TABLE items ADD COLUMN created_sequence INTEGER NOT NULL DEFAULT 0;
ALTER TABLE items ADD COLUMN content_md5 TEXT NOT NULL DEFAULT '';
ALTER TABLE items ADD COLUMN content_changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE items ADD COLUMN content_conflict INTEGER NOT NULL DEFAULT 0;
ALTER TABLE items ADD COLUMN rollback_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE items ADD COLUMN delete_requested INTEGER NOT NULL DEFAULT 0;

CREATE INDEX items_created_sequence ON items (created_sequence) WHERE created_sequence > 0;
CREATE INDEX items_rollback_id ON items (rollback_id) WHERE rollback_id > 0;
CREATE INDEX items_delete_requested ON items (id) WHERE delete_requested = 1;
CREATE INDEX items_content_conflict ON items (id) WHERE content_conflict = 1;

CREATE TABLE snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  label TEXT NOT NULL,
  reason TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  settings TEXT NOT NULL,
  paused INTEGER NOT NULL,
  last_created INTEGER NOT NULL,
  last_queued INTEGER NOT NULL,
  counts TEXT NOT NULL
);

CREATE TABLE rollbacks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  snapshot_id INTEGER NOT NULL,
  safety_snapshot_id INTEGER NOT NULL,
  state TEXT NOT NULL,
  total INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  not_found INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  job_id TEXT NOT NULL DEFAULT '',
  message TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
)sql";

// Version 3, for several Orthanc nodes over one database. Each Sending item records the node
// that claimed it and the ID of that claim, so that only that claim records its outcome. The
// nodes table has each node's last sight and the items it sent.
const char* const MIGRATION_V3_SQL = R"sql(
ALTER TABLE items ADD COLUMN claimed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE items ADD COLUMN claim_id INTEGER NOT NULL DEFAULT 0;

CREATE TABLE nodes (
  name TEXT PRIMARY KEY NOT NULL,
  last_seen INTEGER NOT NULL,
  sent INTEGER NOT NULL DEFAULT 0
);
)sql";

// Version 4: the UUID of Orthanc's attachment, from which the workers read the file in the
// storage directory without a request to Orthanc. Items of an older version have none.
const char* const MIGRATION_V4_SQL = R"sql(
ALTER TABLE items ADD COLUMN file_uuid TEXT NOT NULL DEFAULT '';
)sql";

// Version 5: the MD5 that Orthanc stored for the attachment that file_uuid names, which the
// workers record for a file read under that UUID instead of hashing it again.
const char* const MIGRATION_V5_SQL = R"sql(
ALTER TABLE items ADD COLUMN file_md5 TEXT NOT NULL DEFAULT '';
)sql";


const std::string RETRYABLE_STATES = "('Failed', 'Skipped', 'RolledBack')";


bool IsRetryable(ItemState state)
{
  return state == ItemState::Failed || state == ItemState::Skipped ||
         state == ItemState::RolledBack;
}
}  // namespace


const std::string RESET_TO_PENDING =
    "state = 'Pending', attempts = 0, status_code = 0, failure_reason = 0, warning_reason = 0, "
    "message = '', queued_at = ?1, updated_at = ?1, next_attempt_at = ?1, lease_until = 0, "
    "sent_at = 0, delete_requested = 0, rollback_id = 0, claimed_by = '', claim_id = 0";

// The columns that ReadItem() expects, in its order.
const std::string ITEM_COLUMNS =
    "id, orthanc_id, sop_instance_uid, series_instance_uid, study_instance_uid, orthanc_study_id, "
    "size, state, attempts, status_code, failure_reason, warning_reason, message, destination, "
    "queued_at, updated_at, next_attempt_at, lease_until, sent_at, sent_service_url, "
    "sent_api_version, sent_partition, created_sequence, content_md5, content_changed, "
    "content_conflict, rollback_id, delete_requested, claimed_by, file_uuid, file_md5";


OutboxItem ReadItem(const Query& query)
{
  OutboxItem item;
  item.id = query.GetInt64(0);
  item.instance.orthancId = query.GetText(1);
  item.instance.sopInstanceUid = query.GetText(2);
  item.instance.seriesInstanceUid = query.GetText(3);
  item.instance.studyInstanceUid = query.GetText(4);
  item.instance.orthancStudyId = query.GetText(5);
  item.instance.size = static_cast<uint64_t>(query.GetInt64(6));
  item.state = query.GetState(7);
  item.attempts = static_cast<unsigned int>(query.GetInt64(8));
  item.statusCode = static_cast<int>(query.GetInt64(9));
  item.failureReason = static_cast<unsigned int>(query.GetInt64(10));
  item.warningReason = static_cast<unsigned int>(query.GetInt64(11));
  item.message = query.GetText(12);
  item.destination = query.GetText(13);
  item.queuedAt = query.GetInt64(14);
  item.updatedAt = query.GetInt64(15);
  item.nextAttemptAt = query.GetInt64(16);
  item.leaseUntil = query.GetInt64(17);
  item.sentAt = query.GetInt64(18);
  item.sentTo.serviceUrl = query.GetText(19);
  item.sentTo.apiVersion = query.GetText(20);
  item.sentTo.partition = query.GetText(21);
  item.createdSequence = query.GetInt64(22);
  item.contentMd5 = query.GetText(23);
  item.contentChanged = query.GetInt64(24) != 0;
  item.contentConflict = query.GetInt64(25) != 0;
  item.rollbackId = query.GetInt64(26);
  item.deleteRequested = query.GetInt64(27) != 0;
  item.claimedBy = query.GetText(28);
  item.instance.fileUuid = query.GetText(29);
  item.instance.fileMd5 = query.GetText(30);
  return item;
}


struct Outbox::Statements
{
  StatementPtr getProperty;
  StatementPtr setProperty;
  StatementPtr insertItem;
  StatementPtr refreshPendingFile;
  StatementPtr requeueItem;
  StatementPtr requeueChangedItem;
  StatementPtr keepDeletedItem;
  StatementPtr expireLeases;
  StatementPtr releaseAllLeases;
  StatementPtr selectDue;
  StatementPtr markSending;
  StatementPtr recordOutcome;
  StatementPtr releaseItem;
  StatementPtr countByState;
  StatementPtr oldestQueuedAt;
  StatementPtr listAll;
  StatementPtr listState;
  StatementPtr findByOrthancId;
  StatementPtr findBySopInstanceUid;
  StatementPtr summaryByOrthancStudyId;
  StatementPtr summaryByStudyInstanceUid;
  StatementPtr retryState;
  StatementPtr retryInstance;
  StatementPtr markSkipped;
  StatementPtr recordNode;

  explicit Statements(Database& database)
  {
    const std::string selectItems = "SELECT " + ITEM_COLUMNS + " FROM items ";
    const std::string summarize =
        "SELECT state, COUNT(*), SUM(size), MIN(orthanc_study_id), MIN(study_instance_uid) "
        "FROM items ";

    const std::string skipLocked = database.GetSkipLockedClause();
    getProperty = Prepare(database, "SELECT value FROM properties WHERE name = ?1");
    setProperty = Prepare(database,
                          "INSERT INTO properties (name, value) VALUES (?1, ?2) "
                          "ON CONFLICT (name) DO UPDATE SET value = excluded.value");
    insertItem = Prepare(database,
                         "INSERT INTO items (orthanc_id, sop_instance_uid, series_instance_uid, "
                         "study_instance_uid, orthanc_study_id, size, state, queued_at, "
                         "updated_at, next_attempt_at, file_uuid, file_md5) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Pending', ?7, ?7, ?7, ?8, ?9) "
                         "ON CONFLICT (orthanc_id) DO NOTHING");
    // An item whose deletion is requested waits for the deletion worker (keepDeletedItem).
    requeueItem = Prepare(database, "UPDATE items SET " + RESET_TO_PENDING +
                                        ", size = ?2, file_uuid = ?4, file_md5 = ?5 "
                                        "WHERE orthanc_id = ?3 AND state IN " +
                                        RETRYABLE_STATES + " AND delete_requested = 0");
    requeueChangedItem =
        Prepare(database, "UPDATE items SET " + RESET_TO_PENDING +
                              ", size = ?2, file_uuid = ?5, file_md5 = ?6, content_changed = 1, "
                              "content_conflict = 0 "
                              "WHERE orthanc_id = ?3 AND state IN ('Mirrored', 'AlreadyPresent') "
                              "AND content_md5 != '' AND content_md5 != ?4 "
                              "AND delete_requested = 0");
    // For an instance stored again while the deletion of the service's copy waits or runs, the
    // row records the new file, and the deletion worker returns the item to Pending after the
    // DELETE. A POST sent before then could reach the service before the DELETE removes it.
    // content_changed marks a new file with other content, for DropDeletionRequests().
    keepDeletedItem =
        Prepare(database,
                "UPDATE items SET size = ?3, file_uuid = ?4, file_md5 = ?5, updated_at = ?1, "
                "content_changed = CASE WHEN ?6 != '' AND content_md5 != '' AND "
                "content_md5 != ?6 THEN 1 ELSE content_changed END "
                "WHERE orthanc_id = ?2 AND delete_requested = 1");
    // An instance stored again while its item waits: the item reads the new attachment.
    refreshPendingFile = Prepare(database,
                                 "UPDATE items SET size = ?1, file_uuid = ?2, file_md5 = ?4 "
                                 "WHERE orthanc_id = ?3 "
                                 "AND state IN ('Pending', 'Sending') AND file_uuid != ?2");
    // Any node expires any lease. Rows that another node's transaction has locked are skipped,
    // because that node is claiming or recording them right now.
    expireLeases = Prepare(database,
                           "UPDATE items SET state = 'Pending', lease_until = 0, claimed_by = '', "
                           "claim_id = 0, updated_at = ?1 WHERE id IN (SELECT id FROM items "
                           "WHERE state = 'Sending' AND lease_until < ?1" +
                               skipLocked + ")");
    // Other nodes may be sending their items of a shared database: only this node's go back.
    releaseAllLeases =
        Prepare(database,
                "UPDATE items SET state = 'Pending', lease_until = 0, "
                "claimed_by = '', claim_id = 0, updated_at = ?1 "
                "WHERE state = 'Sending'" +
                    std::string(database.IsPostgreSql() ? " AND claimed_by = ?2" : ""));
    selectDue = Prepare(database, selectItems +
                                      "WHERE state = 'Pending' AND next_attempt_at <= ?1 AND "
                                      "rollback_id = 0 AND delete_requested = 0 "
                                      "ORDER BY next_attempt_at, id LIMIT ?2" +
                                      skipLocked);
    markSending = Prepare(database,
                          "UPDATE items SET state = 'Sending', lease_until = ?1, updated_at = ?2, "
                          "claimed_by = ?4, claim_id = ?5 WHERE id = ?3");
    recordOutcome =
        Prepare(database,
                "UPDATE items SET state = ?1, attempts = attempts + ?2, "
                "status_code = ?3, failure_reason = ?4, warning_reason = ?5, "
                "message = ?6, destination = COALESCE(?7, destination), "
                "next_attempt_at = COALESCE(?8, next_attempt_at), "
                "sent_at = COALESCE(?9, sent_at), lease_until = 0, updated_at = ?10, "
                // A copy found again at the same destination stays this plugin's.
                "created_sequence = CASE WHEN ?1 = 'Mirrored' THEN ?12 "
                "WHEN ?1 != 'AlreadyPresent' THEN created_sequence "
                "WHEN sent_service_url = ?13 AND sent_api_version = ?14 "
                "AND sent_partition = ?15 THEN created_sequence ELSE 0 END, "
                "sent_service_url = CASE WHEN ?9 IS NULL THEN sent_service_url "
                "ELSE ?13 END, "
                "sent_api_version = CASE WHEN ?9 IS NULL THEN sent_api_version "
                "ELSE ?14 END, "
                "sent_partition = CASE WHEN ?9 IS NULL THEN sent_partition ELSE ?15 END, "
                "content_md5 = CASE WHEN ?16 = '' THEN content_md5 ELSE ?16 END, "
                "content_conflict = CASE WHEN ?9 IS NULL THEN content_conflict "
                "ELSE ?17 END, "
                "content_changed = CASE WHEN ?9 IS NULL THEN content_changed ELSE 0 END, "
                "claimed_by = '', claim_id = 0 "
                "WHERE id = ?11 AND state = 'Sending' AND claimed_by = ?18 "
                "AND claim_id = ?19");
    releaseItem = Prepare(database,
                          "UPDATE items SET state = 'Pending', next_attempt_at = ?1, "
                          "lease_until = 0, claimed_by = '', claim_id = 0, updated_at = ?2 "
                          "WHERE id = ?3 AND state = 'Sending' AND claimed_by = ?4 "
                          "AND claim_id = ?5");
    countByState = Prepare(database, "SELECT state, COUNT(*) FROM items GROUP BY state");
    oldestQueuedAt =
        Prepare(database, "SELECT MIN(queued_at) FROM items WHERE state IN ('Pending', 'Sending')");
    listAll = Prepare(database, selectItems + "WHERE id > ?1 ORDER BY id LIMIT ?2");
    listState =
        Prepare(database, selectItems + "WHERE state = ?1 AND id > ?2 ORDER BY id LIMIT ?3");
    findByOrthancId = Prepare(database, selectItems + "WHERE orthanc_id = ?1");
    findBySopInstanceUid =
        Prepare(database, selectItems + "WHERE sop_instance_uid = ?1 ORDER BY id DESC LIMIT 1");
    summaryByOrthancStudyId =
        Prepare(database, summarize + "WHERE orthanc_study_id = ?1 GROUP BY state");
    summaryByStudyInstanceUid =
        Prepare(database, summarize + "WHERE study_instance_uid = ?1 GROUP BY state");
    retryState = Prepare(database, "UPDATE items SET " + RESET_TO_PENDING + " WHERE state = ?2");
    retryInstance =
        Prepare(database, "UPDATE items SET " + RESET_TO_PENDING +
                              " WHERE orthanc_id = ?2 AND state IN " + RETRYABLE_STATES);
    markSkipped = Prepare(database,
                          "UPDATE items SET state = 'Skipped', message = ?1, lease_until = 0, "
                          "claimed_by = '', claim_id = 0, updated_at = ?2 "
                          "WHERE id = ?3 AND state IN ('Pending', 'Sending')");
    recordNode = Prepare(database,
                         "INSERT INTO nodes (name, last_seen, sent) VALUES (?1, ?2, ?3) "
                         "ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen, "
                         "sent = nodes.sent + excluded.sent");
  }
};


namespace
{
int64_t ReadIntegerProperty(Database& database, const StatementPtr& getProperty, const char* name,
                            int64_t fallback)
{
  Query query(database, getProperty, std::string("read the property ") + name);
  query.Bind(std::string(name));
  return query.Step() ? query.GetInt64(0) : fallback;
}


uint64_t InsertInstance(Database& database, const StatementPtr& statement,
                        const NewInstance& instance, int64_t now)
{
  if (instance.orthancId.empty())
  {
    throw Exception(ErrorCode::InternalError, "Cannot queue the instance with SOP Instance UID \"" +
                                                  instance.sopInstanceUid +
                                                  "\": its Orthanc ID is empty");
  }

  return Query(database, statement, "queue the instance " + instance.orthancId)
      .Bind(instance.orthancId)
      .Bind(instance.sopInstanceUid)
      .Bind(instance.seriesInstanceUid)
      .Bind(instance.studyInstanceUid)
      .Bind(instance.orthancStudyId)
      .Bind(ToSqliteInteger(instance.size))
      .Bind(now)
      .Bind(instance.fileUuid)
      .Bind(instance.fileMd5)
      .Run();
}


bool ReadStudySummary(StudySummary& summary, Database& database, const StatementPtr& statement,
                      const std::string& key)
{
  Query query(database, statement, "sum up the study " + key);
  query.Bind(key);

  StudySummary result;
  bool found = false;
  while (query.Step())
  {
    const uint64_t count = static_cast<uint64_t>(query.GetInt64(1));
    result.counts.counts[static_cast<size_t>(query.GetState(0))] = count;
    result.instances += count;
    result.bytes += static_cast<uint64_t>(query.GetInt64(2));
    if (!found)
    {
      result.orthancStudyId = query.GetText(3);
      result.studyInstanceUid = query.GetText(4);
      found = true;
    }
  }

  if (found)
  {
    summary = result;
  }

  return found;
}
}  // namespace


Outbox::Outbox(const std::string& database, const std::string& nodeName)
    : nodeName_(nodeName), db_(OpenDatabase(database))
{
  CreateSchema();
  statements_ = std::make_unique<Statements>(*db_);

  // A claim ID only has to differ from the earlier claims of the same item, also those of an
  // earlier process with the same node name, so a random start is enough.
  std::random_device random;
  nextClaimId_ = static_cast<int64_t>((static_cast<uint64_t>(random()) << 20) ^ random()) + 1;

  RecordHeartbeat(NowMs());
}


Outbox::~Outbox() = default;


void Outbox::CreateSchema()
{
  Database& database = *db_;
  Transaction transaction(database, TransactionMode::Write, "create the schema");

  // Two nodes that start at once over an empty PostgreSQL database would both create the
  // schema: the second waits here until the first has committed it.
  database.LockForTransaction(MIGRATION_LOCK_KEY, "create the schema");
  const int64_t version = database.ReadSchemaVersion();

  if (version > SCHEMA_VERSION)
  {
    throw Exception(ErrorCode::DatabaseError,
                    "The outbox database " + database.GetName() + " has schema version " +
                        std::to_string(version) + ", newer than the version " +
                        std::to_string(SCHEMA_VERSION) +
                        " of this plugin: upgrade the plugin or use another database");
  }

  if (version == 0)
  {
    Execute(database, SCHEMA_SQL, "create the schema");
  }
  if (version < 2)
  {
    Execute(database, MIGRATION_V2_SQL, "migrate the schema to version 2");
  }
  if (version < 3)
  {
    Execute(database, MIGRATION_V3_SQL, "migrate the schema to version 3");
  }
  if (version < 4)
  {
    Execute(database, MIGRATION_V4_SQL, "migrate the schema to version 4");
  }
  if (version < 5)
  {
    Execute(database, MIGRATION_V5_SQL, "migrate the schema to version 5");
  }
  if (version < SCHEMA_VERSION)
  {
    database.WriteSchemaVersion(SCHEMA_VERSION);
  }

  transaction.Commit();
}


int64_t Outbox::GetFollowerSequence()
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "read the follower sequence";
  Transaction transaction(database, TransactionMode::Read, action);

  int64_t sequence = NO_FOLLOWER_SEQUENCE;
  {
    Query query(database, statements_->getProperty, action);
    query.Bind(std::string(FOLLOWER_SEQUENCE_PROPERTY));
    if (query.Step())
    {
      sequence = query.GetInt64(0);
    }
  }

  transaction.Commit();
  return sequence;
}


QueueResult Outbox::QueueFromChanges(const std::vector<NewInstance>& instances,
                                     int64_t lastSequence, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "queue the instances of changes up to " + std::to_string(lastSequence);
  Transaction transaction(database, TransactionMode::RepairableWrite, action);

  // An instance stored again after it was deleted, or after it failed, is sent again.
  const QueueResult result = QueueInTransaction(instances, QueueMode::RequeueFailed, now);

  Query(database, statements_->setProperty, "store the follower sequence")
      .Bind(std::string(FOLLOWER_SEQUENCE_PROPERTY))
      .Bind(lastSequence)
      .Run();

  transaction.Commit();
  return result;
}


QueueResult Outbox::Queue(const std::vector<NewInstance>& instances, QueueMode mode, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "queue " + std::to_string(instances.size()) + " instances";
  Transaction transaction(database, TransactionMode::Write, action);

  const QueueResult result = QueueInTransaction(instances, mode, now);

  transaction.Commit();
  return result;
}


QueueResult Outbox::QueueInTransaction(const std::vector<NewInstance>& instances, QueueMode mode,
                                       int64_t now)
{
  Database& database = *db_;
  QueueResult result;
  for (const NewInstance& instance : instances)
  {
    if (InsertInstance(database, statements_->insertItem, instance, now) > 0)
    {
      result.inserted++;
      continue;
    }

    if (!instance.fileUuid.empty())
    {
      Query(database, statements_->refreshPendingFile,
            "record the new file of the instance " + instance.orthancId)
          .Bind(ToSqliteInteger(instance.size))
          .Bind(instance.fileUuid)
          .Bind(instance.orthancId)
          .Bind(instance.fileMd5)
          .Run();
    }

    uint64_t requeued = 0;
    if (mode == QueueMode::RequeueFailed)
    {
      requeued =
          Query(database, statements_->requeueItem, "requeue the instance " + instance.orthancId)
              .Bind(now)
              .Bind(ToSqliteInteger(instance.size))
              .Bind(instance.orthancId)
              .Bind(instance.fileUuid)
              .Bind(instance.fileMd5)
              .Run();

      requeued +=
          Query(database, statements_->keepDeletedItem, "keep the instance " + instance.orthancId)
              .Bind(now)
              .Bind(instance.orthancId)
              .Bind(ToSqliteInteger(instance.size))
              .Bind(instance.fileUuid)
              .Bind(instance.fileMd5)
              .Bind(instance.contentMd5)
              .Run();
    }

    if (requeued == 0 && !instance.contentMd5.empty())
    {
      requeued = Query(database, statements_->requeueChangedItem,
                       "requeue the changed instance " + instance.orthancId)
                     .Bind(now)
                     .Bind(ToSqliteInteger(instance.size))
                     .Bind(instance.orthancId)
                     .Bind(instance.contentMd5)
                     .Bind(instance.fileUuid)
                     .Bind(instance.fileMd5)
                     .Run();
    }

    if (requeued > 0)
    {
      result.requeued++;
    }
    else
    {
      result.unchanged++;
    }
  }

  return result;
}


std::vector<OutboxItem> Outbox::ClaimBatch(size_t maxCount, uint64_t maxBytes, int64_t now,
                                           int64_t leaseUntil)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "claim a batch";
  Transaction transaction(database, TransactionMode::RepairableWrite, action);

  Query(database, statements_->expireLeases, "expire the leases").Bind(now).Run();

  // The SELECT is reset before any row is updated, because SQLite leaves undefined whether a
  // running SELECT returns the rows that the same connection changes meanwhile.
  std::vector<OutboxItem> batch;
  {
    Query query(database, statements_->selectDue, action);
    query.Bind(now).Bind(ToSqliteInteger(maxCount));

    uint64_t totalBytes = 0;
    while (batch.size() < maxCount && query.Step())
    {
      OutboxItem item = ReadItem(query);
      if (!batch.empty() && totalBytes + item.instance.size > maxBytes)
      {
        break;
      }

      totalBytes += item.instance.size;
      batch.push_back(std::move(item));
    }
  }

  const int64_t claimId = nextClaimId_++;
  for (OutboxItem& item : batch)
  {
    Query(database, statements_->markSending, action)
        .Bind(leaseUntil)
        .Bind(now)
        .Bind(item.id)
        .Bind(nodeName_)
        .Bind(claimId)
        .Run();
    item.state = ItemState::Sending;
    item.leaseUntil = leaseUntil;
    item.updatedAt = now;
    item.claimedBy = nodeName_;
  }

  transaction.Commit();

  for (const OutboxItem& item : batch)
  {
    claims_[item.id] = claimId;
  }
  return batch;
}


uint64_t Outbox::ExpireLeases(int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "expire the leases";
  Transaction transaction(database, TransactionMode::Write, action);

  const uint64_t expired = Query(database, statements_->expireLeases, action).Bind(now).Run();

  transaction.Commit();
  return expired;
}


uint64_t Outbox::ReleaseAllLeases(int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "release all leases";
  Transaction transaction(database, TransactionMode::Write, action);

  uint64_t released = 0;
  {
    Query query(database, statements_->releaseAllLeases, action);
    query.Bind(now);
    if (database.IsPostgreSql())
    {
      query.Bind(nodeName_);
    }
    released = query.Run();
  }
  claims_.clear();

  transaction.Commit();
  return released;
}


void Outbox::RecordOutcomes(const std::vector<ItemOutcome>& outcomes, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "record the outcomes of " + std::to_string(outcomes.size()) + " items";
  Transaction transaction(database, TransactionMode::RepairableWrite, action);

  // Nodes that record outcomes at the same time would give two copies the same creation
  // sequence.
  database.LockForTransaction(CREATED_SEQUENCE_LOCK_KEY, action);
  int64_t createdSequence =
      ReadIntegerProperty(database, statements_->getProperty, CREATED_SEQUENCE_PROPERTY, 0);
  const int64_t firstCreatedSequence = createdSequence;
  int64_t sent = 0;

  for (const ItemOutcome& outcome : outcomes)
  {
    if (outcome.state == ItemState::Sending)
    {
      throw Exception(ErrorCode::InternalError,
                      "Invalid outcome for outbox item " + std::to_string(outcome.id) +
                          ": the state is Sending, expected Pending or a final state");
    }

    const bool confirmed =
        (outcome.state == ItemState::Mirrored || outcome.state == ItemState::AlreadyPresent);

    Query query(database, statements_->recordOutcome,
                "record the outcome of item " + std::to_string(outcome.id));
    query.Bind(outcome.state)
        .Bind(static_cast<int64_t>(outcome.countAttempt ? 1 : 0))
        .Bind(static_cast<int64_t>(outcome.statusCode))
        .Bind(static_cast<int64_t>(outcome.failureReason))
        .Bind(static_cast<int64_t>(outcome.warningReason))
        .Bind(outcome.message);

    if (outcome.destination.empty())
    {
      query.BindNull();
    }
    else
    {
      query.Bind(outcome.destination);
    }

    if (outcome.state == ItemState::Pending)
    {
      query.Bind(outcome.nextAttemptAt);
    }
    else
    {
      query.BindNull();
    }

    if (confirmed)
    {
      query.Bind(now);
    }
    else
    {
      query.BindNull();
    }

    const int64_t nextCreatedSequence =
        createdSequence + (outcome.state == ItemState::Mirrored ? 1 : 0);
    const uint64_t changed = query.Bind(now)
                                 .Bind(outcome.id)
                                 .Bind(nextCreatedSequence)
                                 .Bind(outcome.sentTo.serviceUrl)
                                 .Bind(outcome.sentTo.apiVersion)
                                 .Bind(outcome.sentTo.partition)
                                 .Bind(outcome.contentMd5)
                                 .Bind(static_cast<int64_t>(outcome.contentConflict ? 1 : 0))
                                 .Bind(nodeName_)
                                 .Bind(GetClaimId(outcome.id))
                                 .Run();

    // An item whose lease expired, and that another claim may hold now, keeps its state, and
    // so does the creation sequence.
    if (changed > 0)
    {
      createdSequence = nextCreatedSequence;
      sent += confirmed ? 1 : 0;
    }
  }

  if (createdSequence != firstCreatedSequence)
  {
    Query(database, statements_->setProperty, "store the creation sequence")
        .Bind(std::string(CREATED_SEQUENCE_PROPERTY))
        .Bind(createdSequence)
        .Run();
  }

  Query(database, statements_->recordNode, "record the node " + nodeName_)
      .Bind(nodeName_)
      .Bind(now)
      .Bind(sent)
      .Run();

  transaction.Commit();

  for (const ItemOutcome& outcome : outcomes)
  {
    claims_.erase(outcome.id);
  }
}


void Outbox::Release(const std::vector<int64_t>& ids, int64_t nextAttemptAt, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "release " + std::to_string(ids.size()) + " items";
  Transaction transaction(database, TransactionMode::RepairableWrite, action);

  for (int64_t id : ids)
  {
    Query(database, statements_->releaseItem, action)
        .Bind(nextAttemptAt)
        .Bind(now)
        .Bind(id)
        .Bind(nodeName_)
        .Bind(GetClaimId(id))
        .Run();
  }

  transaction.Commit();

  for (int64_t id : ids)
  {
    claims_.erase(id);
  }
}


StateCounts Outbox::CountByState()
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "count the items per state";
  Transaction transaction(database, TransactionMode::Read, action);

  StateCounts result;
  {
    Query query(database, statements_->countByState, action);
    while (query.Step())
    {
      result.counts[static_cast<size_t>(query.GetState(0))] =
          static_cast<uint64_t>(query.GetInt64(1));
    }
  }

  transaction.Commit();
  return result;
}


int64_t Outbox::GetOldestPendingTime()
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "find the oldest pending item";
  Transaction transaction(database, TransactionMode::Read, action);

  int64_t oldest = 0;
  {
    Query query(database, statements_->oldestQueuedAt, action);
    if (query.Step() && !query.IsNull(0))
    {
      oldest = query.GetInt64(0);
    }
  }

  transaction.Commit();
  return oldest;
}


std::vector<OutboxItem> Outbox::ListItems(const ItemState* state, int64_t sinceId, size_t limit)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "list the items";
  Transaction transaction(database, TransactionMode::Read, action);

  std::vector<OutboxItem> items;
  {
    Query query(database, state != nullptr ? statements_->listState : statements_->listAll, action);
    if (state != nullptr)
    {
      query.Bind(*state);
    }

    query.Bind(sinceId).Bind(ToSqliteInteger(limit));
    while (query.Step())
    {
      items.push_back(ReadItem(query));
    }
  }

  transaction.Commit();
  return items;
}


bool Outbox::FindItem(OutboxItem& item, const std::string& orthancIdOrSopInstanceUid)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "find the item " + orthancIdOrSopInstanceUid;
  Transaction transaction(database, TransactionMode::Read, action);

  // An Orthanc ID wins over a SOP Instance UID. A SOP Instance UID that several Orthanc instances
  // share (the same UID under different patients) gives the most recently queued of them.
  bool found = false;
  for (const StatementPtr* statement :
       {&statements_->findByOrthancId, &statements_->findBySopInstanceUid})
  {
    Query query(database, *statement, action);
    query.Bind(orthancIdOrSopInstanceUid);
    if (query.Step())
    {
      item = ReadItem(query);
      found = true;
      break;
    }
  }

  transaction.Commit();
  return found;
}


bool Outbox::GetStudySummary(StudySummary& summary, const std::string& orthancIdOrStudyInstanceUid)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "sum up the study " + orthancIdOrStudyInstanceUid;
  Transaction transaction(database, TransactionMode::Read, action);

  // A Study Instance UID that several Orthanc studies share sums all of them up, and
  // orthancStudyId is then the lowest of their IDs.
  const bool found = ReadStudySummary(summary, database, statements_->summaryByOrthancStudyId,
                                      orthancIdOrStudyInstanceUid) ||
                     ReadStudySummary(summary, database, statements_->summaryByStudyInstanceUid,
                                      orthancIdOrStudyInstanceUid);

  transaction.Commit();
  return found;
}


uint64_t Outbox::RetryState(ItemState state, int64_t now)
{
  if (!IsRetryable(state))
  {
    return 0;
  }

  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = std::string("retry the ") + ToString(state) + " items";
  Transaction transaction(database, TransactionMode::Write, action);

  const uint64_t retried =
      Query(database, statements_->retryState, action).Bind(now).Bind(state).Run();

  transaction.Commit();
  return retried;
}


uint64_t Outbox::RetryInstances(const std::vector<std::string>& orthancIds, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "retry " + std::to_string(orthancIds.size()) + " instances";
  Transaction transaction(database, TransactionMode::Write, action);

  uint64_t retried = 0;
  for (const std::string& orthancId : orthancIds)
  {
    retried += Query(database, statements_->retryInstance, "retry the instance " + orthancId)
                   .Bind(now)
                   .Bind(orthancId)
                   .Run();
  }

  transaction.Commit();
  return retried;
}


void Outbox::MarkSkipped(int64_t id, const std::string& message, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "mark item " + std::to_string(id) + " as Skipped";
  Transaction transaction(database, TransactionMode::Write, action);

  Query(database, statements_->markSkipped, action).Bind(message).Bind(now).Bind(id).Run();

  transaction.Commit();
  claims_.erase(id);
}


int64_t Outbox::GetClaimId(int64_t itemId) const
{
  const auto claim = claims_.find(itemId);
  return claim == claims_.end() ? 0 : claim->second;
}


void Outbox::RecordHeartbeat(int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "record the node " + nodeName_;
  Transaction transaction(database, TransactionMode::Write, action);

  Query(database, statements_->recordNode, action)
      .Bind(nodeName_)
      .Bind(now)
      .Bind(static_cast<int64_t>(0))
      .Run();

  transaction.Commit();
}


std::vector<NodeRecord> Outbox::ListNodes()
{
  std::lock_guard<std::mutex> lock(mutex_);
  Database& database = *db_;
  const std::string action = "list the nodes";
  Transaction transaction(database, TransactionMode::Read, action);

  std::vector<NodeRecord> nodes;
  {
    StatementPtr statement =
        Prepare(database,
                "SELECT name, last_seen, sent, (SELECT COUNT(*) FROM items "
                "WHERE state = 'Sending' AND claimed_by = nodes.name) FROM nodes ORDER BY name");
    Query query(database, statement, action);
    while (query.Step())
    {
      NodeRecord node;
      node.name = query.GetText(0);
      node.lastSeen = query.GetInt64(1);
      node.sent = static_cast<uint64_t>(query.GetInt64(2));
      node.claimed = static_cast<uint64_t>(query.GetInt64(3));
      nodes.push_back(node);
    }
  }

  transaction.Commit();
  return nodes;
}


bool Outbox::IsShared() const
{
  return db_->IsPostgreSql();
}


bool Outbox::TryHoldFollowerLock()
{
  return db_->TryHoldSessionLock(FOLLOWER_LOCK_KEY);
}


void Outbox::ReleaseFollowerLock()
{
  db_->ReleaseSessionLock();
}


std::string Outbox::GetConnectionError() const
{
  return db_->GetConnectionError();
}
}  // namespace AzureDicom
