#include "Sync/Sqlite.h"

#include "Common/Exception.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace AzureDicom
{
namespace
{
// How long a statement waits for another connection's write lock before it fails with SQLITE_BUSY.
const int BUSY_TIMEOUT_MS = 5000;

const mode_t DATABASE_FILE_MODE = 0600;

// The primary result code is the low 8 bits of an extended result code.
const int PRIMARY_RESULT_CODE_MASK = 0xff;

const char* GetResultCodeName(int code)
{
#define AZURE_DICOM_RESULT_CODE(name) \
  case name:                          \
    return #name;

  switch (code)
  {
    AZURE_DICOM_RESULT_CODE(SQLITE_BUSY_RECOVERY)
    AZURE_DICOM_RESULT_CODE(SQLITE_BUSY_SNAPSHOT)
    AZURE_DICOM_RESULT_CODE(SQLITE_BUSY_TIMEOUT)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_READ)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_SHORT_READ)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_WRITE)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_FSYNC)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_DIR_FSYNC)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_TRUNCATE)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_FSTAT)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_LOCK)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_NOMEM)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_SHMOPEN)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_SHMSIZE)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR_SHMMAP)
    AZURE_DICOM_RESULT_CODE(SQLITE_CANTOPEN_ISDIR)
    AZURE_DICOM_RESULT_CODE(SQLITE_CANTOPEN_FULLPATH)
    AZURE_DICOM_RESULT_CODE(SQLITE_CORRUPT_INDEX)
    AZURE_DICOM_RESULT_CODE(SQLITE_READONLY_DBMOVED)
    AZURE_DICOM_RESULT_CODE(SQLITE_READONLY_DIRECTORY)
    AZURE_DICOM_RESULT_CODE(SQLITE_CONSTRAINT_NOTNULL)
    AZURE_DICOM_RESULT_CODE(SQLITE_CONSTRAINT_PRIMARYKEY)
    AZURE_DICOM_RESULT_CODE(SQLITE_CONSTRAINT_TRIGGER)
    AZURE_DICOM_RESULT_CODE(SQLITE_CONSTRAINT_UNIQUE)
    default:
      break;
  }

  switch (code & PRIMARY_RESULT_CODE_MASK)
  {
    AZURE_DICOM_RESULT_CODE(SQLITE_ERROR)
    AZURE_DICOM_RESULT_CODE(SQLITE_INTERNAL)
    AZURE_DICOM_RESULT_CODE(SQLITE_PERM)
    AZURE_DICOM_RESULT_CODE(SQLITE_ABORT)
    AZURE_DICOM_RESULT_CODE(SQLITE_BUSY)
    AZURE_DICOM_RESULT_CODE(SQLITE_LOCKED)
    AZURE_DICOM_RESULT_CODE(SQLITE_NOMEM)
    AZURE_DICOM_RESULT_CODE(SQLITE_READONLY)
    AZURE_DICOM_RESULT_CODE(SQLITE_INTERRUPT)
    AZURE_DICOM_RESULT_CODE(SQLITE_IOERR)
    AZURE_DICOM_RESULT_CODE(SQLITE_CORRUPT)
    AZURE_DICOM_RESULT_CODE(SQLITE_NOTFOUND)
    AZURE_DICOM_RESULT_CODE(SQLITE_FULL)
    AZURE_DICOM_RESULT_CODE(SQLITE_CANTOPEN)
    AZURE_DICOM_RESULT_CODE(SQLITE_PROTOCOL)
    AZURE_DICOM_RESULT_CODE(SQLITE_SCHEMA)
    AZURE_DICOM_RESULT_CODE(SQLITE_TOOBIG)
    AZURE_DICOM_RESULT_CODE(SQLITE_CONSTRAINT)
    AZURE_DICOM_RESULT_CODE(SQLITE_MISMATCH)
    AZURE_DICOM_RESULT_CODE(SQLITE_MISUSE)
    AZURE_DICOM_RESULT_CODE(SQLITE_NOLFS)
    AZURE_DICOM_RESULT_CODE(SQLITE_AUTH)
    AZURE_DICOM_RESULT_CODE(SQLITE_RANGE)
    AZURE_DICOM_RESULT_CODE(SQLITE_NOTADB)
    default:
      return "SQLITE_UNKNOWN";
  }

#undef AZURE_DICOM_RESULT_CODE
}
}  // namespace


[[noreturn]] void ThrowSqliteError(sqlite3* handle, const std::string& path, int code,
                                   const std::string& action)
{
  // sqlite3_errmsg() describes the most recent failed call on the connection. That is the call
  // that returned this code, because callers hold the outbox mutex or run in the constructor.
  const char* description = (handle != nullptr ? sqlite3_errmsg(handle) : sqlite3_errstr(code));

  throw Exception(ErrorCode::DatabaseError, "Outbox database " + path + ": failed to " + action +
                                                ": " + description + " (" +
                                                GetResultCodeName(code) + ")");
}


namespace
{
class SqliteStatement : public Statement
{
public:
  SqliteStatement(sqlite3* handle, const std::string& path, sqlite3_stmt* statement)
      : handle_(handle), path_(path), statement_(statement)
  {
  }

  ~SqliteStatement() override
  {
    sqlite3_finalize(statement_);
  }

  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;

  void BindInt64(int parameter, int64_t value) override
  {
    CheckBind(sqlite3_bind_int64(statement_, parameter, value));
  }

  void BindText(int parameter, const std::string& value) override
  {
    CheckBind(sqlite3_bind_text(statement_, parameter, value.c_str(),
                                static_cast<int>(value.size()), SQLITE_TRANSIENT));
  }

  void BindNull(int parameter) override
  {
    CheckBind(sqlite3_bind_null(statement_, parameter));
  }

  bool Step(const std::string& action) override
  {
    const int code = sqlite3_step(statement_);
    if (code == SQLITE_ROW)
    {
      return true;
    }

    if (code != SQLITE_DONE)
    {
      ThrowSqliteError(handle_, path_, code, action);
    }

    return false;
  }

  uint64_t GetChanges() override
  {
    return static_cast<uint64_t>(sqlite3_changes64(handle_));
  }

  bool IsNull(int column) const override
  {
    return sqlite3_column_type(statement_, column) == SQLITE_NULL;
  }

  int64_t GetInt64(int column) const override
  {
    return sqlite3_column_int64(statement_, column);
  }

  std::string GetText(int column) const override
  {
    const unsigned char* text = sqlite3_column_text(statement_, column);
    if (text == nullptr)
    {
      return std::string();
    }

    return std::string(reinterpret_cast<const char*>(text),
                       static_cast<size_t>(sqlite3_column_bytes(statement_, column)));
  }

  void Reset() override
  {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
  }

private:
  void CheckBind(int code)
  {
    if (code != SQLITE_OK)
    {
      ThrowSqliteError(handle_, path_, code, "bind a parameter");
    }
  }

  sqlite3* handle_;
  const std::string& path_;
  sqlite3_stmt* statement_;
};


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


SqliteDatabase::SqliteDatabase(const std::string& path) : path_(path)
{
  CreateDatabaseFile(path_);

  // sqlite3_open_v2() returns a handle to close even when it fails.
  const int openCode = sqlite3_open_v2(path_.c_str(), &handle_,
                                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (openCode != SQLITE_OK)
  {
    const std::string message = "Outbox database " + path_ +
                                ": failed to open the file: " + sqlite3_errmsg(handle_) + " (" +
                                GetResultCodeName(openCode) + ")";
    sqlite3_close_v2(handle_);
    throw Exception(ErrorCode::DatabaseError, message);
  }

  try
  {
    sqlite3_extended_result_codes(handle_, 1);
    sqlite3_busy_timeout(handle_, BUSY_TIMEOUT_MS);

    // When the process may not write the file, SQLite opens it read-only and reports no error.
    if (sqlite3_db_readonly(handle_, "main") != 0)
    {
      throw Exception(ErrorCode::DatabaseError, "The outbox database " + path_ +
                                                    " is read-only: Orthanc must be able to "
                                                    "write to it and to its directory");
    }

    // WAL lets the REST routes read while a worker writes. synchronous=FULL also syncs the WAL at
    // every commit: with NORMAL, a committed transaction can vanish on a power cut, so only
    // RepairableWrite transactions use it (Begin()).
    StatementPtr journalMode = Prepare("PRAGMA journal_mode = WAL");
    const bool hasRow = journalMode->Step("switch to WAL journal mode");
    const std::string mode = hasRow ? journalMode->GetText(0) : std::string();
    journalMode->Reset();
    if (mode != "wal")
    {
      throw Exception(ErrorCode::DatabaseError, "The outbox database " + path_ +
                                                    " cannot use WAL journal mode (it stays in \"" +
                                                    mode +
                                                    "\" mode): put it on a local file system");
    }

    Execute("PRAGMA synchronous = FULL", "set synchronous = FULL");
  }
  catch (...)
  {
    sqlite3_close_v2(handle_);
    throw;
  }
}


SqliteDatabase::~SqliteDatabase()
{
  sqlite3_close_v2(handle_);
}


StatementPtr SqliteDatabase::Prepare(const std::string& sql)
{
  sqlite3_stmt* statement = nullptr;
  const int code =
      sqlite3_prepare_v3(handle_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &statement, nullptr);
  if (code != SQLITE_OK)
  {
    ThrowSqliteError(handle_, path_, code, "prepare the statement \"" + sql + "\"");
  }

  return std::make_unique<SqliteStatement>(handle_, path_, statement);
}


void SqliteDatabase::Execute(const std::string& sql, const std::string& action)
{
  const int code = sqlite3_exec(handle_, sql.c_str(), nullptr, nullptr, nullptr);
  if (code != SQLITE_OK)
  {
    ThrowSqliteError(handle_, path_, code, action);
  }
}


void SqliteDatabase::Begin(TransactionMode mode, const std::string& action)
{
  // In WAL mode, synchronous=NORMAL leaves a commit in the WAL file without fsync(); the
  // commits stay in order and survive a crash of Orthanc. synchronous is a setting of the
  // connection, which SQLite changes only outside a transaction.
  const bool syncCommit = (mode != TransactionMode::RepairableWrite);
  if (syncCommit != syncCommits_)
  {
    Execute(syncCommit ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
            "set how the transaction to " + action + " commits");
    syncCommits_ = syncCommit;
  }
  Execute(mode == TransactionMode::Read ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE",
          "begin a transaction to " + action);
}


void SqliteDatabase::Commit(const std::string& action)
{
  Execute("COMMIT", "commit the transaction to " + action);
}


void SqliteDatabase::Rollback() noexcept
{
  // After some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY, SQLITE_NOMEM), SQLite may have
  // rolled the transaction back itself, and a second ROLLBACK would fail. So only a transaction
  // that is still open is rolled back here.
  if (sqlite3_get_autocommit(handle_) == 0)
  {
    sqlite3_exec(handle_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
}


int64_t SqliteDatabase::ReadSchemaVersion()
{
  StatementPtr statement = Prepare("PRAGMA user_version");
  Query query(*this, statement, "read the schema version");
  return query.Step() ? query.GetInt64(0) : 0;
}


void SqliteDatabase::WriteSchemaVersion(int64_t version)
{
  Execute("PRAGMA user_version = " + std::to_string(version), "store the schema version");
}
}  // namespace AzureDicom
