#pragma once

#include "Sync/Database.h"

#include <sqlite3.h>

#include <string>

// The SQLite implementation of the outbox's database interface.
namespace AzureDicom
{
// Throws Exception(DatabaseError) naming the file, the action and SQLite's message.
[[noreturn]] void ThrowSqliteError(sqlite3* handle, const std::string& path, int code,
                                   const std::string& action);


// One connection to an SQLite file in WAL mode with synchronous=FULL. A write transaction takes
// the write lock at BEGIN IMMEDIATE, so another writer makes it fail there with SQLITE_BUSY after
// the busy timeout, and not half-way when its first read turns into a write.
class SqliteDatabase : public Database
{
public:
  // Opens or creates the file (mode 0600). Throws DatabaseError for a file that is not a
  // database, read-only, or on a file system without WAL.
  explicit SqliteDatabase(const std::string& path);
  ~SqliteDatabase() override;

  SqliteDatabase(const SqliteDatabase&) = delete;
  SqliteDatabase& operator=(const SqliteDatabase&) = delete;

  const std::string& GetName() const override
  {
    return path_;
  }

  bool IsPostgreSql() const override
  {
    return false;
  }

  StatementPtr Prepare(const std::string& sql) override;
  void Execute(const std::string& sql, const std::string& action) override;
  void Begin(TransactionMode mode, const std::string& action) override;
  void Commit(const std::string& action) override;
  void Rollback() noexcept override;

  std::string GetSkipLockedClause() const override
  {
    return "";
  }

  void LockForTransaction(int64_t /* key */, const std::string& /* action */) override {}

  int64_t ReadSchemaVersion() override;
  void WriteSchemaVersion(int64_t version) override;

  bool TryHoldSessionLock(int64_t /* key */) override
  {
    return true;
  }

  void ReleaseSessionLock() override {}

  std::string GetConnectionError() const override
  {
    return "";
  }

private:
  std::string path_;
  sqlite3* handle_ = nullptr;
  bool syncCommits_ = true;  // synchronous=FULL, as the constructor sets it
};
}  // namespace AzureDicom
