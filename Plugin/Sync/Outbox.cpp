#include "Sync/Outbox.h"

#include "Sync/OutboxRows.h"
#include "Sync/Sqlite.h"

#include "Common/Exception.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

namespace AzureDicom
{
namespace
{
// PRAGMA user_version of the schema that this code creates. A database with a higher version was
// written by a newer plugin, and this one rejects it rather than corrupt it.
const int SCHEMA_VERSION = 2;

// How long a statement waits for another connection's write lock before it fails with SQLITE_BUSY.
const int BUSY_TIMEOUT_MS = 5000;

const mode_t DATABASE_FILE_MODE = 0600;


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



// Sets an item back to Pending as if it were queued at ?1: due at once, with attempts, status code,
// reasons and message cleared. The destination, the creation mark and the digest stay, for a
// later rollback or conflict check.
const std::string RESET_TO_PENDING =
    "state = 'Pending', attempts = 0, status_code = 0, failure_reason = 0, warning_reason = 0, "
    "message = '', queued_at = ?1, updated_at = ?1, next_attempt_at = ?1, lease_until = 0, "
    "sent_at = 0, delete_requested = 0, rollback_id = 0";

const std::string RETRYABLE_STATES = "('Failed', 'Skipped', 'RolledBack')";


















bool IsRetryable(ItemState state)
{
  return state == ItemState::Failed || state == ItemState::Skipped ||
         state == ItemState::RolledBack;
}


void CreateDatabaseFile(const std::string& path)
{
  // SQLite would create a missing file with mode 0644 (SQLITE_DEFAULT_FILE_PERMISSIONS) less the
  // umask. It gives the -wal and -shm files the mode of the main file, so creating the file here
  // keeps all three private.
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, DATABASE_FILE_MODE);
  if (fd < 0)
  {
    const int error = errno;
    throw Exception(ErrorCode::DatabaseError, "Failed to open or create the outbox database " +
                                                  path + ": " + std::strerror(error) +
                                                  " (check that the directory exists and that "
                                                  "Orthanc may write to it)");
  }

  close(fd);
}
}  // namespace


// The columns that ReadItem() expects, in its order.
const std::string ITEM_COLUMNS =
    "id, orthanc_id, sop_instance_uid, series_instance_uid, study_instance_uid, orthanc_study_id, "
    "size, state, attempts, status_code, failure_reason, warning_reason, message, destination, "
    "queued_at, updated_at, next_attempt_at, lease_until, sent_at, sent_service_url, "
    "sent_api_version, sent_partition, created_sequence, content_md5, content_changed, "
    "content_conflict, rollback_id, delete_requested";


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
  return item;
}


struct Outbox::Statements
{
  StatementPtr beginRead;
  StatementPtr beginWrite;
  StatementPtr commit;
  StatementPtr getProperty;
  StatementPtr setProperty;
  StatementPtr insertItem;
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

  explicit Statements(const Database& database)
  {
    const std::string selectItems = "SELECT " + ITEM_COLUMNS + " FROM items ";
    const std::string summarize =
        "SELECT state, COUNT(*), SUM(size), MIN(orthanc_study_id), MIN(study_instance_uid) "
        "FROM items ";

    beginRead = Prepare(database, "BEGIN DEFERRED");
    beginWrite = Prepare(database, "BEGIN IMMEDIATE");
    commit = Prepare(database, "COMMIT");
    getProperty = Prepare(database, "SELECT value FROM properties WHERE name = ?1");
    setProperty = Prepare(database,
                          "INSERT INTO properties (name, value) VALUES (?1, ?2) "
                          "ON CONFLICT (name) DO UPDATE SET value = excluded.value");
    insertItem = Prepare(database,
                         "INSERT INTO items (orthanc_id, sop_instance_uid, series_instance_uid, "
                         "study_instance_uid, orthanc_study_id, size, state, queued_at, "
                         "updated_at, next_attempt_at) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Pending', ?7, ?7, ?7) "
                         "ON CONFLICT (orthanc_id) DO NOTHING");
    requeueItem =
        Prepare(database, "UPDATE items SET " + RESET_TO_PENDING +
                              ", size = ?2 WHERE orthanc_id = ?3 AND state IN " + RETRYABLE_STATES);
    requeueChangedItem =
        Prepare(database, "UPDATE items SET " + RESET_TO_PENDING +
                              ", size = ?2, content_changed = 1, content_conflict = 0 "
                              "WHERE orthanc_id = ?3 AND state IN ('Mirrored', 'AlreadyPresent') "
                              "AND content_md5 != '' AND content_md5 != ?4");
    // The deletion worker may be deleting the service's copy right now, so the item is sent
    // again: the service then creates it, or reports that it already stores it.
    keepDeletedItem = Prepare(database, "UPDATE items SET " + RESET_TO_PENDING +
                                            " WHERE orthanc_id = ?2 AND delete_requested = 1");
    expireLeases = Prepare(database,
                           "UPDATE items SET state = 'Pending', lease_until = 0, updated_at = ?1 "
                           "WHERE state = 'Sending' AND lease_until < ?1");
    releaseAllLeases = Prepare(database,
                               "UPDATE items SET state = 'Pending', lease_until = 0, "
                               "updated_at = ?1 WHERE state = 'Sending'");
    selectDue = Prepare(database, selectItems +
                                      "WHERE state = 'Pending' AND next_attempt_at <= ?1 AND rollback_id = 0 "
                                      "ORDER BY next_attempt_at, id LIMIT ?2");
    markSending = Prepare(database,
                          "UPDATE items SET state = 'Sending', lease_until = ?1, updated_at = ?2 "
                          "WHERE id = ?3");
    recordOutcome = Prepare(database,
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
                            "content_changed = CASE WHEN ?9 IS NULL THEN content_changed ELSE 0 END "
                            "WHERE id = ?11 AND state = 'Sending'");
    releaseItem = Prepare(database,
                          "UPDATE items SET state = 'Pending', next_attempt_at = ?1, "
                          "lease_until = 0, updated_at = ?2 WHERE id = ?3 AND state = 'Sending'");
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
                          "updated_at = ?2 WHERE id = ?3 AND state IN ('Pending', 'Sending')");
  }
};


namespace
{
int64_t ReadIntegerProperty(const Database& database, const StatementPtr& getProperty,
                            const char* name, int64_t fallback)
{
  Query query(database, getProperty, std::string("read the property ") + name);
  query.Bind(std::string(name));
  return query.Step() ? query.GetInt64(0) : fallback;
}


uint64_t InsertInstance(const Database& database, const StatementPtr& statement,
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
      .Run();
}


bool ReadStudySummary(StudySummary& summary, const Database& database,
                      const StatementPtr& statement, const std::string& key)
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


void Outbox::DatabaseCloser::operator()(sqlite3* db) const
{
  sqlite3_close_v2(db);
}


Outbox::Outbox(const std::string& path) : path_(path)
{
  CreateDatabaseFile(path_);

  sqlite3* handle = nullptr;
  const int openCode =
      sqlite3_open_v2(path_.c_str(), &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  db_.reset(handle);  // sqlite3_open_v2() returns a handle to close even when it fails
  const Database database{db_.get(), path_};
  if (openCode != SQLITE_OK)
  {
    ThrowSqliteError(database, openCode, "open the file");
  }

  sqlite3_extended_result_codes(db_.get(), 1);
  sqlite3_busy_timeout(db_.get(), BUSY_TIMEOUT_MS);

  // When the process may not write the file, SQLite opens it read-only and reports no error.
  if (sqlite3_db_readonly(db_.get(), "main") != 0)
  {
    throw Exception(ErrorCode::DatabaseError, "The outbox database " + path_ +
                                                  " is read-only: Orthanc must be able to "
                                                  "write to it and to its directory");
  }

  CreateSchema();
  statements_ = std::make_unique<Statements>(database);
}


Outbox::~Outbox() = default;


void Outbox::CreateSchema()
{
  const Database database{db_.get(), path_};

  // WAL lets the REST routes read while a worker writes. synchronous=FULL also syncs the WAL at
  // every commit: with NORMAL, a committed transaction can vanish on a power cut.
  StatementPtr journalMode = Prepare(database, "PRAGMA journal_mode = WAL");
  {
    Query query(database, journalMode, "switch to WAL journal mode");
    const bool hasRow = query.Step();
    if (!hasRow || query.GetText(0) != "wal")
    {
      throw Exception(ErrorCode::DatabaseError, "The outbox database " + path_ +
                                                    " cannot use WAL journal mode (it stays in \"" +
                                                    (hasRow ? query.GetText(0) : std::string()) +
                                                    "\" mode): put it on a local file system");
    }
  }

  Execute(database, "PRAGMA synchronous = FULL", "set synchronous = FULL");

  StatementPtr beginWrite = Prepare(database, "BEGIN IMMEDIATE");
  StatementPtr commit = Prepare(database, "COMMIT");
  StatementPtr userVersion = Prepare(database, "PRAGMA user_version");
  Transaction transaction(database, beginWrite, commit, "create the schema");

  int64_t version = 0;
  {
    Query query(database, userVersion, "read the schema version");
    if (query.Step())
    {
      version = query.GetInt64(0);
    }
  }

  if (version > SCHEMA_VERSION)
  {
    throw Exception(ErrorCode::DatabaseError,
                    "The outbox database " + path_ + " has schema version " +
                        std::to_string(version) + ", newer than the version " +
                        std::to_string(SCHEMA_VERSION) +
                        " of this plugin: upgrade the plugin or use another database file");
  }

  if (version == 0)
  {
    Execute(database, SCHEMA_SQL, "create the schema");
  }
  if (version < 2)
  {
    Execute(database, MIGRATION_V2_SQL, "migrate the schema to version 2");
  }
  if (version < SCHEMA_VERSION)
  {
    Execute(database, ("PRAGMA user_version = " + std::to_string(SCHEMA_VERSION)).c_str(),
            "store the schema version");
  }

  transaction.Commit();
}


int64_t Outbox::GetFollowerSequence()
{
  std::lock_guard<std::mutex> lock(mutex_);
  const Database database{db_.get(), path_};
  const std::string action = "read the follower sequence";
  Transaction transaction(database, statements_->beginRead, statements_->commit, action);

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
  const Database database{db_.get(), path_};
  const std::string action = "queue the instances of changes up to " + std::to_string(lastSequence);
  Transaction transaction(database, statements_->beginWrite, statements_->commit, action);

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
  const Database database{db_.get(), path_};
  const std::string action = "queue " + std::to_string(instances.size()) + " instances";
  Transaction transaction(database, statements_->beginWrite, statements_->commit, action);

  const QueueResult result = QueueInTransaction(instances, mode, now);

  transaction.Commit();
  return result;
}


QueueResult Outbox::QueueInTransaction(const std::vector<NewInstance>& instances, QueueMode mode,
                                       int64_t now)
{
  const Database database{db_.get(), path_};
  QueueResult result;
  for (const NewInstance& instance : instances)
  {
    if (InsertInstance(database, statements_->insertItem, instance, now) > 0)
    {
      result.inserted++;
      continue;
    }

    uint64_t requeued = 0;
    if (mode == QueueMode::RequeueFailed)
    {
      requeued =
          Query(database, statements_->requeueItem, "requeue the instance " + instance.orthancId)
              .Bind(now)
              .Bind(ToSqliteInteger(instance.size))
              .Bind(instance.orthancId)
              .Run();

      // Stored again in Orthanc: a delete waiting for the service no longer applies.
      requeued += Query(database, statements_->keepDeletedItem,
                        "keep the instance " + instance.orthancId)
                      .Bind(now)
                      .Bind(instance.orthancId)
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
  const Database database{db_.get(), path_};
  const std::string action = "claim a batch";
  Transaction transaction(database, statements_->beginWrite, statements_->commit, action);

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

  for (OutboxItem& item : batch)
  {
    Query(database, statements_->markSending, action)
        .Bind(leaseUntil)
        .Bind(now)
        .Bind(item.id)
        .Run();
    item.state = ItemState::Sending;
    item.leaseUntil = leaseUntil;
    item.updatedAt = now;
  }

  transaction.Commit();
  return batch;
}


uint64_t Outbox::ExpireLeases(int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  const Database database{db_.get(), path_};
  const std::string action = "expire the leases";
  Transaction transaction(database, statements_->beginWrite, statements_->commit, action);

  const uint64_t expired = Query(database, statements_->expireLeases, action).Bind(now).Run();

  transaction.Commit();
  return expired;
}


uint64_t Outbox::ReleaseAllLeases(int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  const Database database{db_.get(), path_};
  const std::string action = "release all leases";
  Transaction transaction(database, statements_->beginWrite, statements_->commit, action);

  const uint64_t released = Query(database, statements_->releaseAllLeases, action).Bind(now).Run();

  transaction.Commit();
  return released;
}


void Outbox::RecordOutcomes(const std::vector<ItemOutcome>& outcomes, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  const Database database{db_.get(), path_};
  const std::string action = "record the outcomes of " + std::to_string(outcomes.size()) + " items";
  Transaction transaction(database, statements_->beginWrite, statements_->commit, action);

  int64_t createdSequence = ReadIntegerProperty(database, statements_->getProperty, CREATED_SEQUENCE_PROPERTY, 0);
  const int64_t firstCreatedSequence = createdSequence;

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

    if (outcome.state == ItemState::Mirrored)
    {
      createdSequence++;
    }

    query.Bind(now)
        .Bind(outcome.id)
        .Bind(createdSequence)
        .Bind(outcome.sentTo.serviceUrl)
        .Bind(outcome.sentTo.apiVersion)
        .Bind(outcome.sentTo.partition)
        .Bind(outcome.contentMd5)
        .Bind(static_cast<int64_t>(outcome.contentConflict ? 1 : 0))
        .Run();
  }

  if (createdSequence != firstCreatedSequence)
  {
    Query(database, statements_->setProperty, "store the creation sequence")
        .Bind(std::string(CREATED_SEQUENCE_PROPERTY))
        .Bind(createdSequence)
        .Run();
  }

  transaction.Commit();
}


void Outbox::Release(const std::vector<int64_t>& ids, int64_t nextAttemptAt, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  const Database database{db_.get(), path_};
  const std::string action = "release " + std::to_string(ids.size()) + " items";
  Transaction transaction(database, statements_->beginWrite, statements_->commit, action);

  for (int64_t id : ids)
  {
    Query(database, statements_->releaseItem, action).Bind(nextAttemptAt).Bind(now).Bind(id).Run();
  }

  transaction.Commit();
}


StateCounts Outbox::CountByState()
{
  std::lock_guard<std::mutex> lock(mutex_);
  const Database database{db_.get(), path_};
  const std::string action = "count the items per state";
  Transaction transaction(database, statements_->beginRead, statements_->commit, action);

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
  const Database database{db_.get(), path_};
  const std::string action = "find the oldest pending item";
  Transaction transaction(database, statements_->beginRead, statements_->commit, action);

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
  const Database database{db_.get(), path_};
  const std::string action = "list the items";
  Transaction transaction(database, statements_->beginRead, statements_->commit, action);

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
  const Database database{db_.get(), path_};
  const std::string action = "find the item " + orthancIdOrSopInstanceUid;
  Transaction transaction(database, statements_->beginRead, statements_->commit, action);

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
  const Database database{db_.get(), path_};
  const std::string action = "sum up the study " + orthancIdOrStudyInstanceUid;
  Transaction transaction(database, statements_->beginRead, statements_->commit, action);

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
  const Database database{db_.get(), path_};
  const std::string action = std::string("retry the ") + ToString(state) + " items";
  Transaction transaction(database, statements_->beginWrite, statements_->commit, action);

  const uint64_t retried =
      Query(database, statements_->retryState, action).Bind(now).Bind(state).Run();

  transaction.Commit();
  return retried;
}


uint64_t Outbox::RetryInstances(const std::vector<std::string>& orthancIds, int64_t now)
{
  std::lock_guard<std::mutex> lock(mutex_);
  const Database database{db_.get(), path_};
  const std::string action = "retry " + std::to_string(orthancIds.size()) + " instances";
  Transaction transaction(database, statements_->beginWrite, statements_->commit, action);

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
  const Database database{db_.get(), path_};
  const std::string action = "mark item " + std::to_string(id) + " as Skipped";
  Transaction transaction(database, statements_->beginWrite, statements_->commit, action);

  Query(database, statements_->markSkipped, action).Bind(message).Bind(now).Bind(id).Run();

  transaction.Commit();
}
}  // namespace AzureDicom
