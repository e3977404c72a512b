#pragma once

#include "Common/Exception.h"
#include "Sync/OutboxItem.h"

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>

// Thin wrappers over the SQLite C API that the outbox and its snapshot tables share.
namespace AzureDicom
{

// The connection and its file name, which every error message names.
struct Database
{
  sqlite3* handle;
  const std::string& path;
};


// Throws Exception(DatabaseError) naming the file, the action and SQLite's message.
[[noreturn]] void ThrowSqliteError(const Database& database, int code, const std::string& action);


void Execute(const Database& database, const char* sql, const std::string& action);


// Clamps a value to the largest SQLite integer.
int64_t ToSqliteInteger(uint64_t value);


struct StatementFinalizer
{
  void operator()(sqlite3_stmt* statement) const
  {
    sqlite3_finalize(statement);
  }
};

using StatementPtr = std::unique_ptr<sqlite3_stmt, StatementFinalizer>;


StatementPtr Prepare(const Database& database, const std::string& sql);


// One use of a cached statement: binds the parameters in order and steps it. The destructor
// resets the statement, so that one left half-read by an exception keeps no read transaction open.
class Query
{
 public:
  Query(const Database& database, const StatementPtr& statement, const std::string& action)
      : database_(database), statement_(statement.get()), action_(action)
  {
  }

  ~Query()
  {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
  }

  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& Bind(int64_t value)
  {
    Check(sqlite3_bind_int64(statement_, nextParameter_++, value));
    return *this;
  }

  Query& Bind(const std::string& value)
  {
    Check(sqlite3_bind_text(statement_, nextParameter_++, value.c_str(),
                            static_cast<int>(value.size()), SQLITE_TRANSIENT));
    return *this;
  }

  Query& Bind(ItemState state)
  {
    Check(sqlite3_bind_text(statement_, nextParameter_++, ToString(state), -1, SQLITE_STATIC));
    return *this;
  }

  Query& BindNull()
  {
    Check(sqlite3_bind_null(statement_, nextParameter_++));
    return *this;
  }

  // Returns true when a row is ready, false when the statement is done.
  bool Step()
  {
    const int code = sqlite3_step(statement_);
    if (code == SQLITE_ROW)
    {
      return true;
    }

    if (code != SQLITE_DONE)
    {
      ThrowSqliteError(database_, code, action_);
    }

    return false;
  }

  // Runs a statement that changes rows; returns how many it changed.
  uint64_t Run()
  {
    Step();
    return static_cast<uint64_t>(sqlite3_changes64(database_.handle));
  }

  bool IsNull(int column) const
  {
    return sqlite3_column_type(statement_, column) == SQLITE_NULL;
  }

  int64_t GetInt64(int column) const
  {
    return sqlite3_column_int64(statement_, column);
  }

  std::string GetText(int column) const
  {
    const unsigned char* text = sqlite3_column_text(statement_, column);
    if (text == nullptr)
    {
      return std::string();
    }

    return std::string(reinterpret_cast<const char*>(text),
                       static_cast<size_t>(sqlite3_column_bytes(statement_, column)));
  }

  ItemState GetState(int column) const
  {
    const std::string name = GetText(column);
    ItemState state;
    if (!ParseItemState(state, name))
    {
      throw Exception(ErrorCode::DatabaseError, "Invalid state \"" + name +
                                                    "\" in the outbox database " + database_.path +
                                                    ": expected a state name "
                                                    "such as Pending or Mirrored");
    }

    return state;
  }

 private:
  void Check(int code)
  {
    if (code != SQLITE_OK)
    {
      ThrowSqliteError(database_, code, action_);
    }
  }

  const Database& database_;
  sqlite3_stmt* statement_;
  std::string action_;
  int nextParameter_ = 1;
};


// One transaction on the outbox connection, rolled back by the destructor unless committed. A
// write transaction takes the write lock at BEGIN IMMEDIATE, so another writer makes it fail there
// with SQLITE_BUSY after the busy timeout, and not half-way when its first read turns into a write.
class Transaction
{
 public:
  Transaction(const Database& database, const StatementPtr& begin, const StatementPtr& commit,
              const std::string& action)
      : database_(database), commit_(commit), action_(action)
  {
    Query(database_, begin, "begin a transaction to " + action_).Run();
  }

  ~Transaction()
  {
    // After some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY, SQLITE_NOMEM), SQLite may have
    // rolled the transaction back itself, and a second ROLLBACK would fail. So only a transaction
    // that is still open is rolled back here.
    if (!committed_ && sqlite3_get_autocommit(database_.handle) == 0)
    {
      sqlite3_exec(database_.handle, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void Commit()
  {
    Query(database_, commit_, "commit the transaction to " + action_).Run();
    committed_ = true;
  }

 private:
  const Database& database_;
  const StatementPtr& commit_;
  std::string action_;
  bool committed_ = false;
};
}  // namespace AzureDicom
