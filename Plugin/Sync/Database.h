#pragma once

#include "Common/Exception.h"
#include "Sync/OutboxItem.h"

#include <cstdint>
#include <memory>
#include <string>

// The small database interface under the outbox: a connection, its statements and transactions,
// with an SQLite and a PostgreSQL (libpq) implementation. The outbox writes its SQL once, in
// SQLite's form with numbered parameters (?1, ?2), and the PostgreSQL connection adapts it in
// AdaptSql(). The few clauses that only one of them has come from the connection.
namespace AzureDicom
{
enum class TransactionMode
{
  Read,  // a consistent snapshot of the database, no writes
  Write,
  // A frequent write that Orthanc's change log or the service makes good again if a power cut
  // undoes it: the follower's position goes back with the items it queued, and an item whose
  // claim or outcome is lost is sent again (the service reports that it has the instance).
  // SQLite commits it without waiting for the disk. It is still safe when Orthanc is killed.
  RepairableWrite
};


// One statement with its parameters (numbered from 1) and, after Step(), its current row.
class Statement
{
public:
  virtual ~Statement() = default;

  virtual void BindInt64(int parameter, int64_t value) = 0;
  virtual void BindText(int parameter, const std::string& value) = 0;
  virtual void BindNull(int parameter) = 0;

  // Runs the statement on the first call; returns true while a row is ready. Errors name the
  // action.
  virtual bool Step(const std::string& action) = 0;

  // The number of rows that the statement inserted, updated or deleted.
  virtual uint64_t GetChanges() = 0;

  virtual bool IsNull(int column) const = 0;
  virtual int64_t GetInt64(int column) const = 0;
  virtual std::string GetText(int column) const = 0;

  // Clears the parameters and the result, so that the statement can run again.
  virtual void Reset() = 0;
};

using StatementPtr = std::unique_ptr<Statement>;


// A connection to the outbox database. Not thread-safe: the outbox serializes its calls.
class Database
{
public:
  virtual ~Database() = default;

  // The file path or the connection string without its password, for messages.
  virtual const std::string& GetName() const = 0;

  virtual bool IsPostgreSql() const = 0;

  virtual StatementPtr Prepare(const std::string& sql) = 0;

  // Runs one or more statements without parameters, such as a schema.
  virtual void Execute(const std::string& sql, const std::string& action) = 0;

  virtual void Begin(TransactionMode mode, const std::string& action) = 0;
  virtual void Commit(const std::string& action) = 0;

  // Rolls back the open transaction, if any. Never throws, because destructors call it.
  virtual void Rollback() noexcept = 0;

  // The clause that locks the rows a SELECT returns and skips those that another transaction
  // locked: " FOR UPDATE SKIP LOCKED" in PostgreSQL, "" in SQLite, where BEGIN IMMEDIATE has
  // already locked the whole file.
  virtual std::string GetSkipLockedClause() const = 0;

  // Serializes the rest of the transaction with every other one that takes the same lock. SQLite
  // has nothing to do, because a write transaction locks the whole file.
  virtual void LockForTransaction(int64_t key, const std::string& action) = 0;

  // The version of the outbox schema recorded in the database, 0 before it is created. Called in
  // the transaction that creates or migrates the schema.
  virtual int64_t ReadSchemaVersion() = 0;
  virtual void WriteSchemaVersion(int64_t version) = 0;

  // Takes, or checks that this process still holds, a lock that lasts as long as a connection of
  // its own: PostgreSQL's session-level advisory lock, released by the server when the process
  // dies. Returns false while another process holds it, or when the lock's connection was lost.
  // SQLite, which one process uses alone, always returns true. Thread-safe.
  virtual bool TryHoldSessionLock(int64_t key) = 0;
  virtual void ReleaseSessionLock() = 0;

  // The last failure to reach the database server, "" while connected (and always for SQLite).
  // Thread-safe.
  virtual std::string GetConnectionError() const = 0;
};


inline StatementPtr Prepare(Database& database, const std::string& sql)
{
  return database.Prepare(sql);
}


inline void Execute(Database& database, const std::string& sql, const std::string& action)
{
  database.Execute(sql, action);
}


// Clamps a value to the largest signed 64-bit integer, the largest integer of both databases.
int64_t ToSqliteInteger(uint64_t value);


// One use of a prepared statement: binds the parameters in order and steps it. The destructor
// resets the statement, so that one left half-read by an exception keeps no result or read
// transaction open.
class Query
{
public:
  Query(Database& database, const StatementPtr& statement, const std::string& action)
      : database_(database), statement_(*statement), action_(action)
  {
  }

  ~Query()
  {
    statement_.Reset();
  }

  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& Bind(int64_t value)
  {
    statement_.BindInt64(nextParameter_++, value);
    return *this;
  }

  Query& Bind(const std::string& value)
  {
    statement_.BindText(nextParameter_++, value);
    return *this;
  }

  Query& Bind(ItemState state)
  {
    statement_.BindText(nextParameter_++, ToString(state));
    return *this;
  }

  Query& BindNull()
  {
    statement_.BindNull(nextParameter_++);
    return *this;
  }

  // Returns true when a row is ready, false when the statement is done.
  bool Step()
  {
    return statement_.Step(action_);
  }

  // Runs a statement that changes rows; returns how many it changed.
  uint64_t Run()
  {
    statement_.Step(action_);
    return statement_.GetChanges();
  }

  bool IsNull(int column) const
  {
    return statement_.IsNull(column);
  }

  int64_t GetInt64(int column) const
  {
    return statement_.GetInt64(column);
  }

  std::string GetText(int column) const
  {
    return statement_.GetText(column);
  }

  ItemState GetState(int column) const
  {
    const std::string name = GetText(column);
    ItemState state;
    if (!ParseItemState(state, name))
    {
      throw Exception(ErrorCode::DatabaseError, "Invalid state \"" + name +
                                                    "\" in the outbox database " +
                                                    database_.GetName() +
                                                    ": expected a state name "
                                                    "such as Pending or Mirrored");
    }

    return state;
  }

private:
  Database& database_;
  Statement& statement_;
  std::string action_;
  int nextParameter_ = 1;
};


// One transaction on the outbox connection, rolled back by the destructor unless committed.
class Transaction
{
public:
  Transaction(Database& database, TransactionMode mode, const std::string& action)
      : database_(database), action_(action)
  {
    database_.Begin(mode, action_);
  }

  ~Transaction()
  {
    if (!committed_)
    {
      database_.Rollback();
    }
  }

  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void Commit()
  {
    database_.Commit(action_);
    committed_ = true;
  }

private:
  Database& database_;
  std::string action_;
  bool committed_ = false;
};


// Returns true for a PostgreSQL connection string: a postgresql:// or postgres:// URI, or the
// key/value form of libpq ("host=db dbname=orthanc").
bool IsPostgreSqlConnectionString(const std::string& database);

// Opens the outbox database: PostgreSQL for a connection string, else the SQLite file at this
// path, created with mode 0600 when missing.
std::unique_ptr<Database> OpenDatabase(const std::string& database);
}  // namespace AzureDicom
