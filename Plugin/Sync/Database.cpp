#include "Sync/Database.h"

#include "Sync/PostgreSql.h"
#include "Sync/Sqlite.h"

#include <cctype>
#include <limits>

namespace AzureDicom
{
namespace
{
// The keywords that can start a libpq key/value connection string, among those most used.
const char* const CONNECTION_KEYWORDS[] = {"host",     "hostaddr", "port",    "dbname",
                                           "user",     "password", "sslmode", "service",
                                           "passfile", "options"};
}  // namespace


int64_t ToSqliteInteger(uint64_t value)
{
  const uint64_t maxValue = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  return static_cast<int64_t>(value < maxValue ? value : maxValue);
}


bool IsPostgreSqlConnectionString(const std::string& database)
{
  if (database.rfind("postgresql://", 0) == 0 || database.rfind("postgres://", 0) == 0)
  {
    return true;
  }

  size_t start = 0;
  while (start < database.size() && std::isspace(static_cast<unsigned char>(database[start])))
  {
    start++;
  }

  size_t end = start;
  while (end < database.size() &&
         (std::isalpha(static_cast<unsigned char>(database[end])) || database[end] == '_'))
  {
    end++;
  }

  size_t equals = end;
  while (equals < database.size() && std::isspace(static_cast<unsigned char>(database[equals])))
  {
    equals++;
  }
  if (equals >= database.size() || database[equals] != '=')
  {
    return false;
  }

  const std::string keyword = database.substr(start, end - start);
  for (const char* candidate : CONNECTION_KEYWORDS)
  {
    if (keyword == candidate)
    {
      return true;
    }
  }
  return false;
}


std::unique_ptr<Database> OpenDatabase(const std::string& database)
{
  if (IsPostgreSqlConnectionString(database))
  {
    return std::make_unique<PostgreSqlDatabase>(database);
  }
  return std::make_unique<SqliteDatabase>(database);
}
}  // namespace AzureDicom
