#include "Sync/PostgreSql.h"

#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Sync/Configuration.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <optional>
#include <vector>

namespace AzureDicom
{
const char* const POSTGRESQL_SCHEMA = "azure_dicom";

namespace
{
// libpq waits for a connection without limit unless connect_timeout is set. A connection string
// that sets it keeps its own value.
const char* const DEFAULT_CONNECT_TIMEOUT_SECONDS = "10";
const char* const APPLICATION_NAME = "OrthancAzureDicom";

// A statement that waits longer than this for a row lock fails, rather than hang a worker behind
// a node that stopped in the middle of a transaction.
const char* const LOCK_TIMEOUT = "30s";

const int64_t FIRST_RECONNECT_DELAY_MS = 1000;
const int64_t MAX_RECONNECT_DELAY_MS = 30000;


std::string GetErrorMessage(PGconn* connection)
{
  std::string message = connection != nullptr ? PQerrorMessage(connection) : "out of memory";
  while (!message.empty() && std::isspace(static_cast<unsigned char>(message.back())))
  {
    message.pop_back();
  }
  return message.empty() ? "unknown error" : message;
}


std::string GetResultError(PGconn* connection, const PGresult* result)
{
  if (result == nullptr)
  {
    return GetErrorMessage(connection);
  }

  std::string message = PQresultErrorMessage(result);
  while (!message.empty() && std::isspace(static_cast<unsigned char>(message.back())))
  {
    message.pop_back();
  }

  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  if (state != nullptr)
  {
    message += std::string(" (SQLSTATE ") + state + ")";
  }
  return message.empty() ? GetErrorMessage(connection) : message;
}


struct ResultDeleter
{
  void operator()(PGresult* result) const
  {
    PQclear(result);
  }
};

using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;


bool IsWordCharacter(char c)
{
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}


// Returns true when the whole word starts at position.
bool MatchesWordAt(const std::string& sql, size_t position, const std::string& word)
{
  if (sql.compare(position, word.size(), word) != 0)
  {
    return false;
  }

  const bool startsWord = position == 0 || !IsWordCharacter(sql[position - 1]);
  const size_t end = position + word.size();
  const bool endsWord = end >= sql.size() || !IsWordCharacter(sql[end]);
  return startsWord && endsWord;
}


void SetUpSession(PGconn* connection)
{
  // The schema may not exist yet: the migration creates it under its advisory lock.
  const std::string sql = std::string("SET search_path TO ") + POSTGRESQL_SCHEMA +
                          "; SET lock_timeout = '" + LOCK_TIMEOUT +
                          "'; SET client_min_messages = warning";
  ResultPtr result(PQexec(connection, sql.c_str()));
  if (!result || PQresultStatus(result.get()) != PGRES_COMMAND_OK)
  {
    throw Exception(ErrorCode::DatabaseError,
                    "failed to set up the session: " + GetResultError(connection, result.get()));
  }
}


class PostgreSqlStatement : public Statement
{
public:
  PostgreSqlStatement(PostgreSqlDatabase& database, const std::string& sql)
      : database_(database), sql_(AdaptSqlToPostgreSql(sql))
  {
  }

  void BindInt64(int parameter, int64_t value) override
  {
    Set(parameter, std::to_string(value));
  }

  void BindText(int parameter, const std::string& value) override
  {
    Set(parameter, value);
  }

  void BindNull(int parameter) override
  {
    Set(parameter, std::nullopt);
  }

  bool Step(const std::string& action) override
  {
    if (!result_)
    {
      Run(action);
    }

    row_++;
    return row_ < PQntuples(result_.get());
  }

  uint64_t GetChanges() override
  {
    const char* count = result_ ? PQcmdTuples(result_.get()) : "";
    return std::strtoull(count, nullptr, 10);
  }

  bool IsNull(int column) const override
  {
    return PQgetisnull(result_.get(), row_, column) != 0;
  }

  int64_t GetInt64(int column) const override
  {
    // SUM() of a BIGINT column is NUMERIC, but without a fraction, so it parses here too.
    return std::strtoll(PQgetvalue(result_.get(), row_, column), nullptr, 10);
  }

  std::string GetText(int column) const override
  {
    return std::string(PQgetvalue(result_.get(), row_, column),
                       static_cast<size_t>(PQgetlength(result_.get(), row_, column)));
  }

  void Reset() override
  {
    result_.reset();
    row_ = -1;
    parameters_.clear();
  }

private:
  void Set(int parameter, std::optional<std::string> value)
  {
    const size_t index = static_cast<size_t>(parameter - 1);
    if (parameters_.size() <= index)
    {
      parameters_.resize(index + 1);
    }
    parameters_[index] = std::move(value);
  }

  void Run(const std::string& action)
  {
    std::vector<const char*> values;
    for (const std::optional<std::string>& parameter : parameters_)
    {
      values.push_back(parameter ? parameter->c_str() : nullptr);
    }

    PGconn* connection = database_.GetConnection();
    result_.reset(PQexecParams(connection, sql_.c_str(), static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, 0));
    const ExecStatusType status = result_ ? PQresultStatus(result_.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)
    {
      const std::string reason = GetResultError(connection, result_.get());
      result_.reset();
      database_.Fail(action, reason);
    }
  }

  PostgreSqlDatabase& database_;
  std::string sql_;
  std::vector<std::optional<std::string>> parameters_;
  ResultPtr result_;
  int row_ = -1;
};
}  // namespace


std::string AdaptSqlToPostgreSql(const std::string& sql)
{
  const std::string autoincrement = "INTEGER PRIMARY KEY AUTOINCREMENT";
  const std::string untypedValue = "value NOT NULL";

  std::string adapted;
  adapted.reserve(sql.size() + 16);
  bool quoted = false;
  for (size_t i = 0; i < sql.size();)
  {
    const char c = sql[i];
    if (c == '\'')
    {
      quoted = !quoted;
      adapted += c;
      i++;
    }
    else if (quoted)
    {
      adapted += c;
      i++;
    }
    else if (c == '?' && i + 1 < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i + 1])))
    {
      adapted += '$';
      i++;
    }
    else if (MatchesWordAt(sql, i, autoincrement))
    {
      adapted += "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
      i += autoincrement.size();
    }
    else if (MatchesWordAt(sql, i, "INTEGER"))
    {
      adapted += "BIGINT";
      i += 7;
    }
    else if (MatchesWordAt(sql, i, untypedValue))
    {
      adapted += "value TEXT NOT NULL";
      i += untypedValue.size();
    }
    else
    {
      adapted += c;
      i++;
    }
  }
  return adapted;
}


PostgreSqlDatabase::PostgreSqlDatabase(const std::string& connectionString)
    : connectionString_(connectionString), name_(RedactDatabase(connectionString))
{
  if (IsAmbiguousDatabaseUri(connectionString))
  {
    throw Exception(ErrorCode::BadConfiguration,
                    "invalid PostgreSQL connection string " + name_ +
                        ": '@' appears more than once before the host, so libpq would take part "
                        "of the user information as the host; percent-encode '@' in the user "
                        "name or password as %40");
  }

  char* parseError = nullptr;
  PQconninfoOption* options = PQconninfoParse(connectionString.c_str(), &parseError);
  if (options == nullptr)
  {
    std::string reason =
        parseError != nullptr ? RedactPostgreSqlMessage(parseError, name_) : "out of memory";
    PQfreemem(parseError);
    while (!reason.empty() && std::isspace(static_cast<unsigned char>(reason.back())))
    {
      reason.pop_back();
    }
    throw Exception(ErrorCode::BadConfiguration,
                    "invalid PostgreSQL connection string " + name_ + ": " + reason +
                        "; expected postgresql://user:password@host:port/database or "
                        "\"host=... port=... dbname=... user=... password=...\"");
  }
  PQconninfoFree(options);

  std::string error;
  connection_ = Connect(error);
  if (connection_ == nullptr)
  {
    throw Exception(ErrorCode::DatabaseError,
                    "cannot connect to the PostgreSQL outbox " + name_ + ": " + error +
                        "; check that the server runs and accepts connections from this host, "
                        "and that the user, password and database name are right");
  }
}


PostgreSqlDatabase::~PostgreSqlDatabase()
{
  ReleaseSessionLock();
  PQfinish(connection_);
}


PGconn* PostgreSqlDatabase::Connect(std::string& error) const
{
  // Keywords are processed in order and the expanded dbname comes last, so that the connection
  // string overrides these defaults.
  const char* keywords[] = {"connect_timeout", "fallback_application_name", "dbname", nullptr};
  const char* values[] = {DEFAULT_CONNECT_TIMEOUT_SECONDS, APPLICATION_NAME,
                          connectionString_.c_str(), nullptr};
  PGconn* connection = PQconnectdbParams(keywords, values, 1);
  if (connection == nullptr || PQstatus(connection) != CONNECTION_OK)
  {
    error = RedactPostgreSqlMessage(GetErrorMessage(connection), name_);
    PQfinish(connection);
    return nullptr;
  }

  try
  {
    SetUpSession(connection);
  }
  catch (const Exception& e)
  {
    error = e.what();
    PQfinish(connection);
    return nullptr;
  }
  return connection;
}


void PostgreSqlDatabase::SetConnectionError(const std::string& error)
{
  std::lock_guard<std::mutex> lock(statusMutex_);
  connectionError_ = error;
}


std::string PostgreSqlDatabase::GetConnectionError() const
{
  std::lock_guard<std::mutex> lock(statusMutex_);
  return connectionError_;
}


void PostgreSqlDatabase::Fail(const std::string& action, const std::string& reason)
{
  if (PQstatus(connection_) != CONNECTION_OK)
  {
    SetConnectionError(reason);
  }

  throw Exception(ErrorCode::DatabaseError,
                  "Outbox database " + name_ + ": failed to " + action + ": " + reason);
}


void PostgreSqlDatabase::EnsureConnected(const std::string& action)
{
  if (PQstatus(connection_) == CONNECTION_OK)
  {
    return;
  }

  const int64_t now = NowMs();
  if (now < nextReconnectAt_)
  {
    // No countdown in the message, so that callers that log each new message log it once.
    throw Exception(ErrorCode::DatabaseError,
                    "Outbox database " + name_ + ": cannot " + action +
                        ": the connection is lost (" + GetConnectionError() +
                        "), and reconnecting is tried again at most every " +
                        std::to_string(reconnectDelayMs_ / 1000) + " s");
  }

  std::string error;
  PGconn* connection = Connect(error);
  if (connection == nullptr)
  {
    reconnectDelayMs_ = reconnectDelayMs_ == 0
                            ? FIRST_RECONNECT_DELAY_MS
                            : std::min(reconnectDelayMs_ * 2, MAX_RECONNECT_DELAY_MS);
    nextReconnectAt_ = now + reconnectDelayMs_;
    SetConnectionError(error);
    throw Exception(ErrorCode::DatabaseError,
                    "Outbox database " + name_ + ": cannot " + action +
                        ": the connection is lost (" + error +
                        "), and reconnecting is tried again at most every " +
                        std::to_string(reconnectDelayMs_ / 1000) + " s");
  }

  PQfinish(connection_);
  connection_ = connection;
  reconnectDelayMs_ = 0;
  nextReconnectAt_ = 0;
  SetConnectionError("");
}


StatementPtr PostgreSqlDatabase::Prepare(const std::string& sql)
{
  return std::make_unique<PostgreSqlStatement>(*this, sql);
}


void PostgreSqlDatabase::Execute(const std::string& sql, const std::string& action)
{
  ResultPtr result(PQexec(connection_, AdaptSqlToPostgreSql(sql).c_str()));
  const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
  {
    Fail(action, GetResultError(connection_, result.get()));
  }
}


void PostgreSqlDatabase::Begin(TransactionMode mode, const std::string& action)
{
  EnsureConnected(action);

  // A read uses one snapshot for all its statements, as SQLite's read transaction does. Writes
  // stay in READ COMMITTED, where a row locked FOR UPDATE is read again in its latest version
  // instead of failing with a serialization error.
  Execute(
      mode != TransactionMode::Read ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
      "begin a transaction to " + action);
}


void PostgreSqlDatabase::Commit(const std::string& action)
{
  const std::string fullAction = "commit the transaction to " + action;
  ResultPtr result(PQexec(connection_, "COMMIT"));
  if (!result || PQresultStatus(result.get()) != PGRES_COMMAND_OK)
  {
    Fail(fullAction, GetResultError(connection_, result.get()));
  }

  // COMMIT of a transaction that an error aborted succeeds, but rolls back.
  if (std::string(PQcmdStatus(result.get())) != "COMMIT")
  {
    Fail(fullAction, "the transaction was rolled back");
  }
}


void PostgreSqlDatabase::Rollback() noexcept
{
  const PGTransactionStatusType status = PQtransactionStatus(connection_);
  if (status == PQTRANS_INTRANS || status == PQTRANS_INERROR)
  {
    PQclear(PQexec(connection_, "ROLLBACK"));
  }
}


void PostgreSqlDatabase::LockForTransaction(int64_t key, const std::string& action)
{
  StatementPtr statement = Prepare("SELECT pg_advisory_xact_lock(?1)");
  Query(*this, statement, "wait for the lock to " + action).Bind(key).Step();
}


int64_t PostgreSqlDatabase::ReadSchemaVersion()
{
  Execute(std::string("CREATE SCHEMA IF NOT EXISTS ") + POSTGRESQL_SCHEMA +
              "; CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
          "create the schema version table");

  StatementPtr statement = Prepare("SELECT MAX(version) FROM schema_version");
  Query query(*this, statement, "read the schema version");
  return query.Step() && !query.IsNull(0) ? query.GetInt64(0) : 0;
}


void PostgreSqlDatabase::WriteSchemaVersion(int64_t version)
{
  Execute("DELETE FROM schema_version", "store the schema version");
  StatementPtr statement = Prepare("INSERT INTO schema_version (version) VALUES (?1)");
  Query(*this, statement, "store the schema version").Bind(version).Run();
}


bool PostgreSqlDatabase::TryHoldSessionLock(int64_t key)
{
  std::lock_guard<std::mutex> lock(lockMutex_);
  if (lockConnection_ != nullptr)
  {
    // The server releases the lock when the connection closes, so a lock whose connection
    // fails its check is lost, even when the connection is reset at once.
    ResultPtr check(PQexec(lockConnection_, "SELECT 1"));
    if (check && PQresultStatus(check.get()) == PGRES_TUPLES_OK &&
        PQstatus(lockConnection_) == CONNECTION_OK)
    {
      return true;
    }

    PQfinish(lockConnection_);
    lockConnection_ = nullptr;
    return false;
  }

  std::string error;
  PGconn* connection = Connect(error);
  if (connection == nullptr)
  {
    SetConnectionError(error);
    return false;
  }

  const std::string sql = "SELECT pg_try_advisory_lock(" + std::to_string(key) + ")";
  ResultPtr result(PQexec(connection, sql.c_str()));
  const bool held = result && PQresultStatus(result.get()) == PGRES_TUPLES_OK &&
                    PQntuples(result.get()) == 1 &&
                    std::string(PQgetvalue(result.get(), 0, 0)) == "t";
  if (!held)
  {
    PQfinish(connection);
    return false;
  }

  lockConnection_ = connection;
  return true;
}


void PostgreSqlDatabase::ReleaseSessionLock()
{
  std::lock_guard<std::mutex> lock(lockMutex_);
  if (lockConnection_ != nullptr)
  {
    // Closing the connection releases the lock.
    PQfinish(lockConnection_);
    lockConnection_ = nullptr;
  }
}
}  // namespace AzureDicom
