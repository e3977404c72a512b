#pragma once

// The two databases that the outbox tests run against. The PostgreSQL tests need a server whose
// URL is in AZURE_DICOM_TEST_POSTGRESQL; without it they fail with a message that names the script
// that starts one. CTest runs them through Resources/with-test-postgresql.sh.

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <cstdlib>
#include <memory>
#include <string>

namespace AzureDicom
{
enum class OutboxBackend
{
  Sqlite,
  PostgreSql
};


inline std::string GetBackendName(const ::testing::TestParamInfo<OutboxBackend>& info)
{
  return info.param == OutboxBackend::Sqlite ? "Sqlite" : "PostgreSql";
}


const char* const TEST_POSTGRESQL_VARIABLE = "AZURE_DICOM_TEST_POSTGRESQL";


// Returns the test server's URL, or "" after a failure whose message names the script that
// starts one.
inline std::string GetTestPostgreSqlUrl()
{
  const char* url = std::getenv(TEST_POSTGRESQL_VARIABLE);
  if (url == nullptr || *url == '\0')
  {
    ADD_FAILURE() << TEST_POSTGRESQL_VARIABLE
                  << " is not set: the PostgreSQL outbox tests need a server. Run them with "
                     "Resources/with-test-postgresql.sh UnitTests --gtest_filter='*PostgreSql*', "
                     "which starts one on 127.0.0.1 and sets the variable, or set it to the URL "
                     "of a database that the tests may clear (postgresql://user:password@"
                     "127.0.0.1:port/database)";
    return "";
  }
  return url;
}


struct ConnectionCloser
{
  void operator()(PGconn* connection) const
  {
    PQfinish(connection);
  }
};

using ConnectionPtr = std::unique_ptr<PGconn, ConnectionCloser>;


// Runs SQL on a connection of its own, as another node or an administrator would. Returns the
// first column of the first row, or "" for none. A failure is a test failure.
inline std::string ExecutePostgreSql(const std::string& url, const std::string& sql)
{
  ConnectionPtr connection(PQconnectdb(url.c_str()));
  if (PQstatus(connection.get()) != CONNECTION_OK)
  {
    ADD_FAILURE() << "cannot connect to " << url << ": " << PQerrorMessage(connection.get());
    return "";
  }

  PGresult* result = PQexec(connection.get(), sql.c_str());
  const ExecStatusType status = PQresultStatus(result);
  std::string value;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
  {
    ADD_FAILURE() << sql << ": " << PQresultErrorMessage(result);
  }
  else if (status == PGRES_TUPLES_OK && PQntuples(result) > 0)
  {
    value = PQgetvalue(result, 0, 0);
  }
  PQclear(result);
  return value;
}


// Returns a URL of an empty outbox on the test server: the outbox's schema is dropped first.
inline std::string PrepareTestPostgreSql()
{
  const std::string url = GetTestPostgreSqlUrl();
  if (!url.empty())
  {
    ExecutePostgreSql(url,
                      "SET client_min_messages = warning; "
                      "DROP SCHEMA IF EXISTS azure_dicom CASCADE");
  }
  return url;
}
}  // namespace AzureDicom
