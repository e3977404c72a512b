#include "Sync/Sqlite.h"

#include "Common/Exception.h"

#include <limits>

namespace AzureDicom
{
namespace
{
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


[[noreturn]] void ThrowSqliteError(const Database& database, int code, const std::string& action)
{
  // sqlite3_errmsg() describes the most recent failed call on the connection. That is the call
  // that returned this code, because callers hold the outbox mutex or run in the constructor.
  const char* description =
      (database.handle != nullptr ? sqlite3_errmsg(database.handle) : sqlite3_errstr(code));

  throw Exception(ErrorCode::DatabaseError, "Outbox database " + database.path + ": failed to " +
                                                action + ": " + description + " (" +
                                                GetResultCodeName(code) + ")");
}


void Execute(const Database& database, const char* sql, const std::string& action)
{
  const int code = sqlite3_exec(database.handle, sql, nullptr, nullptr, nullptr);
  if (code != SQLITE_OK)
  {
    ThrowSqliteError(database, code, action);
  }
}


int64_t ToSqliteInteger(uint64_t value)
{
  const uint64_t maxValue = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  return static_cast<int64_t>(value < maxValue ? value : maxValue);
}


StatementPtr Prepare(const Database& database, const std::string& sql)
{
  sqlite3_stmt* statement = nullptr;
  const int code = sqlite3_prepare_v3(database.handle, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT,
                                      &statement, nullptr);
  if (code != SQLITE_OK)
  {
    ThrowSqliteError(database, code, "prepare the statement \"" + sql + "\"");
  }

  return StatementPtr(statement);
}
}  // namespace AzureDicom
