#pragma once

#include "Sync/Database.h"

#include <cstdint>
#include <mutex>
#include <string>

typedef struct pg_conn PGconn;

// The PostgreSQL (libpq) implementation of the outbox's database interface.
namespace AzureDicom
{
// The PostgreSQL schema (namespace) of the outbox's tables, so that they cannot clash with the
// tables of Orthanc's own index when both share a database.
extern const char* const POSTGRESQL_SCHEMA;

// Rewrites SQL written for SQLite into PostgreSQL's form: ?N parameters become $N, INTEGER
// columns become BIGINT, AUTOINCREMENT keys become identity columns, and the untyped value
// column of the properties table becomes TEXT. Text inside single quotes is left alone.
std::string AdaptSqlToPostgreSql(const std::string& sql);


// One libpq connection. Statements run with PQexecParams, so that none depends on a server-side
// prepared statement and a reconnection needs no preparation. A connection lost between two
// transactions is reset by the next Begin(), at most once per backoff delay (1 s doubling to
// 30 s), and every call fails with DatabaseError meanwhile.
class PostgreSqlDatabase : public Database
{
public:
  // Connects and selects the outbox's schema. Throws BadConfiguration for a connection string
  // that libpq cannot parse, DatabaseError when the server cannot be reached or rejects the login.
  explicit PostgreSqlDatabase(const std::string& connectionString);
  ~PostgreSqlDatabase() override;

  PostgreSqlDatabase(const PostgreSqlDatabase&) = delete;
  PostgreSqlDatabase& operator=(const PostgreSqlDatabase&) = delete;

  const std::string& GetName() const override
  {
    return name_;
  }

  bool IsPostgreSql() const override
  {
    return true;
  }

  StatementPtr Prepare(const std::string& sql) override;
  void Execute(const std::string& sql, const std::string& action) override;
  void Begin(TransactionMode mode, const std::string& action) override;
  void Commit(const std::string& action) override;
  void Rollback() noexcept override;

  std::string GetSkipLockedClause() const override
  {
    return " FOR UPDATE SKIP LOCKED";
  }

  void LockForTransaction(int64_t key, const std::string& action) override;
  int64_t ReadSchemaVersion() override;
  void WriteSchemaVersion(int64_t version) override;
  bool TryHoldSessionLock(int64_t key) override;
  void ReleaseSessionLock() override;
  std::string GetConnectionError() const override;

  // The connection, for the statements of this database.
  PGconn* GetConnection() const
  {
    return connection_;
  }

  // Records a failed call; a lost connection is then reset by the next Begin().
  [[noreturn]] void Fail(const std::string& action, const std::string& reason);

private:
  PGconn* Connect(std::string& error) const;
  void EnsureConnected(const std::string& action);
  void SetConnectionError(const std::string& error);

  std::string connectionString_;
  std::string name_;
  PGconn* connection_ = nullptr;
  int64_t nextReconnectAt_ = 0;
  int64_t reconnectDelayMs_ = 0;

  mutable std::mutex statusMutex_;  // protects connectionError_
  std::string connectionError_;

  std::mutex lockMutex_;  // protects lockConnection_
  PGconn* lockConnection_ = nullptr;
};
}  // namespace AzureDicom
