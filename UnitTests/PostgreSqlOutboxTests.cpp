// The PostgreSQL outbox as several Orthanc nodes share it: claims from two connections, leases,
// the follower lock, the schema's migration and the errors of a bad connection string. Every
// test here needs the server of Resources/with-test-postgresql.sh (see OutboxBackends.h).

#include "Common/Exception.h"
#include "Sync/ChangeFollower.h"
#include "Sync/Database.h"
#include "Sync/FollowerElection.h"
#include "Sync/Outbox.h"
#include "Sync/OutboxJson.h"
#include "Sync/PostgreSql.h"

#include "OutboxBackends.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

using namespace AzureDicom;

namespace
{
const int64_t NOW = 1700000000000;
const int64_t LEASE_MS = 60000;
const uint64_t NO_BYTE_LIMIT = 1ull << 40;

NewInstance MakeInstance(int number)
{
  NewInstance instance;
  instance.orthancId = "orthanc-" + std::to_string(number);
  instance.sopInstanceUid = "1.2.826.0.1.3680043.10.1." + std::to_string(number);
  instance.seriesInstanceUid = "1.2.826.0.1.3680043.10.2";
  instance.studyInstanceUid = "1.2.826.0.1.3680043.10.3";
  instance.orthancStudyId = "study";
  instance.size = 1000;
  return instance;
}

std::vector<NewInstance> MakeInstances(int first, int count)
{
  std::vector<NewInstance> instances;
  for (int number = first; number < first + count; number++)
  {
    instances.push_back(MakeInstance(number));
  }
  return instances;
}

std::vector<int64_t> GetIds(const std::vector<OutboxItem>& items)
{
  std::vector<int64_t> ids;
  for (const OutboxItem& item : items)
  {
    ids.push_back(item.id);
  }
  return ids;
}

std::vector<ItemOutcome> MakeOutcomes(const std::vector<OutboxItem>& items, ItemState state)
{
  std::vector<ItemOutcome> outcomes;
  for (const OutboxItem& item : items)
  {
    ItemOutcome outcome;
    outcome.id = item.id;
    outcome.state = state;
    outcome.statusCode = 200;
    outcomes.push_back(outcome);
  }
  return outcomes;
}

OutboxItem GetItem(Outbox& outbox, const std::string& orthancId)
{
  OutboxItem item;
  EXPECT_TRUE(outbox.FindItem(item, orthancId)) << orthancId;
  return item;
}

const NodeRecord* FindNode(const std::vector<NodeRecord>& nodes, const std::string& name)
{
  for (const NodeRecord& node : nodes)
  {
    if (node.name == name)
    {
      return &node;
    }
  }
  return nullptr;
}

// Replaces the password of a postgresql:// URL.
std::string WithPassword(const std::string& url, const std::string& password)
{
  const size_t userStart = url.find("://") + 3;
  const size_t colon = url.find(':', userStart);
  const size_t at = url.find('@', userStart);
  return url.substr(0, colon + 1) + password + url.substr(at);
}

std::string GetPassword(const std::string& url)
{
  const size_t userStart = url.find("://") + 3;
  const size_t colon = url.find(':', userStart);
  const size_t at = url.find('@', userStart);
  return url.substr(colon + 1, at - colon - 1);
}


class QuietLogger : public ILogger
{
public:
  void Info(const std::string&) override {}

  void Warning(const std::string&) override {}

  void Error(const std::string&) override {}
};


// An Orthanc whose change log is empty and stays at sequence 5. It counts the follower's reads
// of /changes, so that a test sees which node follows.
class IdleOrthanc : public IOrthancGateway
{
public:
  bool GetJson(Json::Value& answer, const std::string& uri) override
  {
    if (uri.rfind("/changes", 0) == 0)
    {
      reads++;
    }
    answer["Changes"] = Json::arrayValue;
    answer["Done"] = true;
    answer["Last"] = 5;
    return true;
  }

  bool GetBinary(std::string&, const std::string&) override
  {
    return false;
  }

  std::atomic<int> reads{0};
};


// Waits up to timeout for the condition; returns whether it became true.
template <typename Condition>
bool WaitFor(Condition condition, std::chrono::milliseconds timeout)
{
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition())
  {
    if (std::chrono::steady_clock::now() > deadline)
    {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// A port on 127.0.0.1 where nothing listens: the test server's port plus one, unless that is
// taken too, is good enough for a refused connection.
std::string WithClosedPort(const std::string& url)
{
  const size_t at = url.find('@');
  const size_t colon = url.find(':', at);
  const size_t slash = url.find('/', colon);
  const int port = std::stoi(url.substr(colon + 1, slash - colon - 1));
  return url.substr(0, colon + 1) + std::to_string(port == 65535 ? 1 : port + 1) +
         url.substr(slash);
}

// The key/value form of the same connection: host=... port=... dbname=... user=... password=...
std::string ToKeyValueForm(const std::string& url)
{
  const size_t userStart = url.find("://") + 3;
  const size_t colon = url.find(':', userStart);
  const size_t at = url.find('@', userStart);
  const size_t portColon = url.find(':', at);
  const size_t slash = url.find('/', portColon);
  return "host=" + url.substr(at + 1, portColon - at - 1) +
         " port=" + url.substr(portColon + 1, slash - portColon - 1) +
         " dbname=" + url.substr(slash + 1) + " user=" + url.substr(userStart, colon - userStart) +
         " password=" + GetPassword(url);
}
}  // namespace


class PostgreSqlOutboxTest : public ::testing::Test
{
protected:
  void SetUp() override
  {
    url_ = PrepareTestPostgreSql();
    ASSERT_FALSE(url_.empty());
  }

  std::string url_;
};


TEST_F(PostgreSqlOutboxTest, EmptyDatabaseGetsSchema)
{
  Outbox outbox(url_, "node-a");

  EXPECT_TRUE(outbox.IsShared());
  EXPECT_EQ(ExecutePostgreSql(url_, "SELECT version FROM azure_dicom.schema_version"), "5");
  EXPECT_EQ(ExecutePostgreSql(url_, "SELECT COUNT(*) FROM azure_dicom.schema_version"), "1");
  EXPECT_EQ(ExecutePostgreSql(url_, "SELECT to_regclass('azure_dicom.items') IS NOT NULL"), "t");
  EXPECT_EQ(ExecutePostgreSql(url_, "SELECT to_regclass('public.items') IS NULL"), "t");
  EXPECT_EQ(outbox.GetFollowerSequence(), -1);
}


TEST_F(PostgreSqlOutboxTest, RecordedVersionIsMigrated)
{
  {
    Outbox outbox(url_, "node-a");
    outbox.QueueFromChanges({MakeInstance(1)}, 7, NOW);
  }

  // Back to the version 2 schema, with its item, as an earlier plugin left it.
  ExecutePostgreSql(url_,
                    "ALTER TABLE azure_dicom.items DROP COLUMN claimed_by, "
                    "DROP COLUMN claim_id, DROP COLUMN file_uuid, DROP COLUMN file_md5; "
                    "DROP TABLE azure_dicom.nodes; "
                    "UPDATE azure_dicom.schema_version SET version = 2");

  Outbox outbox(url_, "node-a");
  EXPECT_EQ(ExecutePostgreSql(url_, "SELECT version FROM azure_dicom.schema_version"), "5");
  EXPECT_EQ(outbox.GetFollowerSequence(), 7);
  const std::vector<OutboxItem> claimed = outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].instance.orthancId, "orthanc-1");
  EXPECT_EQ(GetItem(outbox, "orthanc-1").claimedBy, "node-a");
}


TEST_F(PostgreSqlOutboxTest, CurrentVersionIsKept)
{
  {
    Outbox outbox(url_, "node-a");
    outbox.Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW);
  }

  Outbox outbox(url_, "node-a");
  EXPECT_EQ(ExecutePostgreSql(url_, "SELECT version FROM azure_dicom.schema_version"), "5");
  EXPECT_EQ(outbox.CountByState().Get(ItemState::Pending), 1u);
}


TEST_F(PostgreSqlOutboxTest, NewerVersionIsRejected)
{
  {
    Outbox outbox(url_, "node-a");
  }
  ExecutePostgreSql(url_, "UPDATE azure_dicom.schema_version SET version = 99");

  try
  {
    Outbox outbox(url_, "node-a");
    FAIL() << "a database of schema version 99 was opened";
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(e.GetCode(), ErrorCode::DatabaseError);
    EXPECT_NE(std::string(e.what()).find("schema version 99"), std::string::npos) << e.what();
  }
}


TEST_F(PostgreSqlOutboxTest, SimultaneousStartsCreateSchemaOnce)
{
  // Without the migration's advisory lock, the second CREATE TABLE fails on the first's table.
  const int nodeCount = 4;
  std::vector<std::string> errors(nodeCount);
  std::vector<std::thread> threads;
  for (int i = 0; i < nodeCount; i++)
  {
    threads.emplace_back(
        [this, i, &errors]()
        {
          try
          {
            Outbox outbox(url_, "node-" + std::to_string(i));
          }
          catch (const std::exception& e)
          {
            errors[i] = e.what();
          }
        });
  }
  for (std::thread& thread : threads)
  {
    thread.join();
  }

  for (int i = 0; i < nodeCount; i++)
  {
    EXPECT_EQ(errors[i], "") << "node-" << i;
  }
  EXPECT_EQ(ExecutePostgreSql(url_, "SELECT COUNT(*) FROM azure_dicom.schema_version"), "1");
}


TEST_F(PostgreSqlOutboxTest, ClaimSkipsRowsLockedElsewhere)
{
  Outbox outbox(url_, "node-b");
  outbox.Queue(MakeInstances(1, 5), QueueMode::InsertMissing, NOW);

  // Another node's claim in progress: its transaction locks the first two rows.
  ConnectionPtr other(PQconnectdb(url_.c_str()));
  ASSERT_EQ(PQstatus(other.get()), CONNECTION_OK);
  PQclear(PQexec(other.get(), "BEGIN"));
  PGresult* locked =
      PQexec(other.get(), "SELECT id FROM azure_dicom.items ORDER BY id LIMIT 2 FOR UPDATE");
  ASSERT_EQ(PQresultStatus(locked), PGRES_TUPLES_OK);
  ASSERT_EQ(PQntuples(locked), 2);
  PQclear(locked);

  const auto start = std::chrono::steady_clock::now();
  const std::vector<OutboxItem> claimed = outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  const auto elapsed = std::chrono::steady_clock::now() - start;

  ASSERT_EQ(claimed.size(), 3u);
  EXPECT_EQ(claimed[0].instance.orthancId, "orthanc-3");
  EXPECT_EQ(claimed[2].instance.orthancId, "orthanc-5");
  EXPECT_LT(elapsed, std::chrono::seconds(5)) << "the claim waited for the other transaction";

  PQclear(PQexec(other.get(), "COMMIT"));
  const std::vector<OutboxItem> rest = outbox.ClaimBatch(10, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].instance.orthancId, "orthanc-1");
}


TEST_F(PostgreSqlOutboxTest, ConcurrentNodeClaimsAreDisjoint)
{
  const int itemCount = 300;
  Outbox first(url_, "node-a");
  Outbox second(url_, "node-b");
  first.Queue(MakeInstances(1, itemCount), QueueMode::InsertMissing, NOW);

  std::map<std::string, std::vector<int64_t>> claimedBy;
  std::mutex mutex;
  auto claimAll = [&](Outbox& outbox)
  {
    for (;;)
    {
      const std::vector<OutboxItem> batch =
          outbox.ClaimBatch(7, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
      if (batch.empty())
      {
        return;
      }
      std::lock_guard<std::mutex> lock(mutex);
      for (const OutboxItem& item : batch)
      {
        claimedBy[outbox.GetNodeName()].push_back(item.id);
      }
    }
  };

  std::thread a1(claimAll, std::ref(first));
  std::thread a2(claimAll, std::ref(first));
  std::thread b1(claimAll, std::ref(second));
  std::thread b2(claimAll, std::ref(second));
  a1.join();
  a2.join();
  b1.join();
  b2.join();

  std::set<int64_t> all;
  size_t total = 0;
  for (const auto& node : claimedBy)
  {
    total += node.second.size();
    all.insert(node.second.begin(), node.second.end());
  }
  EXPECT_EQ(total, static_cast<size_t>(itemCount));
  EXPECT_EQ(all.size(), static_cast<size_t>(itemCount));

  const std::vector<NodeRecord> nodes = first.ListNodes();
  const NodeRecord* nodeA = FindNode(nodes, "node-a");
  const NodeRecord* nodeB = FindNode(nodes, "node-b");
  ASSERT_NE(nodeA, nullptr);
  ASSERT_NE(nodeB, nullptr);
  EXPECT_EQ(nodeA->claimed, claimedBy["node-a"].size());
  EXPECT_EQ(nodeB->claimed, claimedBy["node-b"].size());
}


TEST_F(PostgreSqlOutboxTest, ExpiredLeaseGoesToOtherNode)
{
  Outbox first(url_, "node-a");
  Outbox second(url_, "node-b");
  first.Queue(MakeInstances(1, 3), QueueMode::InsertMissing, NOW);
  const std::vector<OutboxItem> firstClaim =
      first.ClaimBatch(10, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  ASSERT_EQ(firstClaim.size(), 3u);

  // Before the lease expires, the other node finds nothing to claim.
  EXPECT_TRUE(second.ClaimBatch(10, NO_BYTE_LIMIT, NOW + LEASE_MS - 1, NOW + 2 * LEASE_MS).empty());

  const int64_t later = NOW + LEASE_MS + 1;
  const std::vector<OutboxItem> secondClaim =
      second.ClaimBatch(10, NO_BYTE_LIMIT, later, later + LEASE_MS);
  ASSERT_EQ(secondClaim.size(), 3u);
  EXPECT_EQ(GetIds(secondClaim), GetIds(firstClaim));
  EXPECT_EQ(GetItem(first, "orthanc-1").claimedBy, "node-b");

  // The late outcome of the first node changes nothing.
  first.RecordOutcomes(MakeOutcomes(firstClaim, ItemState::Failed), later + 10);
  EXPECT_EQ(second.CountByState().Get(ItemState::Sending), 3u);
  EXPECT_EQ(second.CountByState().Get(ItemState::Failed), 0u);

  second.RecordOutcomes(MakeOutcomes(secondClaim, ItemState::Mirrored), later + 20);
  EXPECT_EQ(second.CountByState().Get(ItemState::Mirrored), 3u);
  EXPECT_EQ(GetItem(second, "orthanc-1").claimedBy, "");

  const std::vector<NodeRecord> nodes = second.ListNodes();
  ASSERT_NE(FindNode(nodes, "node-a"), nullptr);
  ASSERT_NE(FindNode(nodes, "node-b"), nullptr);
  EXPECT_EQ(FindNode(nodes, "node-a")->sent, 0u);
  EXPECT_EQ(FindNode(nodes, "node-b")->sent, 3u);
  EXPECT_EQ(FindNode(nodes, "node-b")->claimed, 0u);
}


TEST_F(PostgreSqlOutboxTest, ReleaseDoesNotTouchOtherNode)
{
  Outbox first(url_, "node-a");
  Outbox second(url_, "node-b");
  first.Queue(MakeInstances(1, 4), QueueMode::InsertMissing, NOW);
  const std::vector<OutboxItem> firstClaim =
      first.ClaimBatch(2, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  const std::vector<OutboxItem> secondClaim =
      second.ClaimBatch(2, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
  ASSERT_EQ(firstClaim.size(), 2u);
  ASSERT_EQ(secondClaim.size(), 2u);

  // A restarted node-a returns its own items only.
  EXPECT_EQ(first.ReleaseAllLeases(NOW + 1), 2u);
  EXPECT_EQ(first.CountByState().Get(ItemState::Pending), 2u);
  EXPECT_EQ(first.CountByState().Get(ItemState::Sending), 2u);

  // Releasing another node's items does nothing either.
  first.Release(GetIds(secondClaim), NOW + 2, NOW + 2);
  EXPECT_EQ(first.CountByState().Get(ItemState::Sending), 2u);

  second.Release(GetIds(secondClaim), NOW + 3, NOW + 3);
  EXPECT_EQ(first.CountByState().Get(ItemState::Pending), 4u);
}


TEST_F(PostgreSqlOutboxTest, CreationSequenceSharedAcrossNodes)
{
  Outbox first(url_, "node-a");
  Outbox second(url_, "node-b");
  first.Queue(MakeInstances(1, 40), QueueMode::InsertMissing, NOW);

  auto mirrorAll = [](Outbox& outbox)
  {
    for (;;)
    {
      const std::vector<OutboxItem> batch =
          outbox.ClaimBatch(3, NO_BYTE_LIMIT, NOW, NOW + LEASE_MS);
      if (batch.empty())
      {
        return;
      }
      outbox.RecordOutcomes(MakeOutcomes(batch, ItemState::Mirrored), NOW);
    }
  };
  std::thread a(mirrorAll, std::ref(first));
  std::thread b(mirrorAll, std::ref(second));
  a.join();
  b.join();

  EXPECT_EQ(first.CountByState().Get(ItemState::Mirrored), 40u);
  EXPECT_EQ(
      ExecutePostgreSql(url_, "SELECT COUNT(DISTINCT created_sequence) FROM azure_dicom.items"),
      "40");
  EXPECT_EQ(ExecutePostgreSql(url_, "SELECT MAX(created_sequence) FROM azure_dicom.items"), "40");

  const std::vector<NodeRecord> nodes = first.ListNodes();
  ASSERT_NE(FindNode(nodes, "node-a"), nullptr);
  ASSERT_NE(FindNode(nodes, "node-b"), nullptr);
  EXPECT_EQ(FindNode(nodes, "node-a")->sent + FindNode(nodes, "node-b")->sent, 40u);
}


TEST_F(PostgreSqlOutboxTest, FollowerLockHandOver)
{
  auto first = std::make_unique<Outbox>(url_, "node-a");
  Outbox second(url_, "node-b");

  EXPECT_TRUE(first->TryHoldFollowerLock());
  EXPECT_TRUE(first->TryHoldFollowerLock());
  EXPECT_FALSE(second.TryHoldFollowerLock());

  // A node that stops closes its connections, and the server releases the lock.
  first.reset();
  EXPECT_TRUE(second.TryHoldFollowerLock());

  Outbox third(url_, "node-c");
  EXPECT_FALSE(third.TryHoldFollowerLock());
  second.ReleaseFollowerLock();
  EXPECT_TRUE(third.TryHoldFollowerLock());
}


TEST_F(PostgreSqlOutboxTest, FollowerLockLostWithConnection)
{
  Outbox first(url_, "node-a");
  Outbox second(url_, "node-b");
  ASSERT_TRUE(first.TryHoldFollowerLock());

  // The server ends the session that holds the lock, as when the node's host disappears.
  EXPECT_EQ(ExecutePostgreSql(url_,
                              "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks "
                              "WHERE locktype = 'advisory' AND granted"),
            "1");

  bool taken = false;
  for (int attempt = 0; attempt < 50 && !taken; attempt++)
  {
    taken = second.TryHoldFollowerLock();
    if (!taken)
    {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  EXPECT_TRUE(taken);
  EXPECT_FALSE(first.TryHoldFollowerLock());
}


TEST_F(PostgreSqlOutboxTest, ElectionHandsFollowerOver)
{
  QuietLogger logger;
  auto firstOutbox = std::make_unique<Outbox>(url_, "node-a");
  Outbox secondOutbox(url_, "node-b");
  IdleOrthanc firstOrthanc;
  IdleOrthanc secondOrthanc;
  auto firstFollower = std::make_unique<ChangeFollower>(firstOrthanc, *firstOutbox, logger);
  ChangeFollower secondFollower(secondOrthanc, secondOutbox, logger);
  auto first = std::make_unique<FollowerElection>(*firstOutbox, *firstFollower, logger);
  FollowerElection second(secondOutbox, secondFollower, logger);

  first->Start();
  ASSERT_TRUE(WaitFor([&] { return first->IsFollowing(); }, std::chrono::seconds(5)));
  second.Start();
  ASSERT_TRUE(WaitFor([&] { return firstOrthanc.reads > 0; }, std::chrono::seconds(5)));

  // Two tries of the second node, and it still does not follow.
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * FollowerElection::RETRY_INTERVAL_MS));
  EXPECT_FALSE(second.IsFollowing());
  EXPECT_EQ(secondOrthanc.reads, 0);

  // The first node stops, and its connections close with it.
  const auto stopped = std::chrono::steady_clock::now();
  first.reset();
  firstFollower.reset();
  firstOutbox.reset();
  const auto timeout = std::chrono::milliseconds(FollowerElection::RETRY_INTERVAL_MS + 3000);
  EXPECT_TRUE(WaitFor([&] { return second.IsFollowing(); }, timeout));
  EXPECT_TRUE(WaitFor([&] { return secondOrthanc.reads > 0; }, timeout));
  EXPECT_LT(std::chrono::steady_clock::now() - stopped, timeout);
  second.Stop();
}


TEST_F(PostgreSqlOutboxTest, LostConnectionIsRetried)
{
  Outbox outbox(url_, "node-a");
  outbox.Queue(MakeInstances(1, 2), QueueMode::InsertMissing, NOW);

  ExecutePostgreSql(url_,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'OrthancAzureDicom'");

  EXPECT_THROW(outbox.CountByState(), Exception);
  EXPECT_NE(outbox.GetConnectionError(), "");

  // The first reconnection may wait for the backoff of 1 s.
  bool reconnected = false;
  for (int attempt = 0; attempt < 50 && !reconnected; attempt++)
  {
    try
    {
      EXPECT_EQ(outbox.CountByState().Get(ItemState::Pending), 2u);
      reconnected = true;
    }
    catch (const Exception&)
    {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  EXPECT_TRUE(reconnected);
  EXPECT_EQ(outbox.GetConnectionError(), "");
}


TEST_F(PostgreSqlOutboxTest, KeyValueFormConnects)
{
  Outbox outbox(ToKeyValueForm(url_), "node-a");
  outbox.Queue({MakeInstance(1)}, QueueMode::InsertMissing, NOW);

  Outbox other(url_, "node-b");
  EXPECT_EQ(other.CountByState().Get(ItemState::Pending), 1u);
}


TEST_F(PostgreSqlOutboxTest, WrongPasswordNamesRedactedDatabase)
{
  const std::string url = WithPassword(url_, "wrong-password-123");
  try
  {
    Outbox outbox(url, "node-a");
    FAIL() << "a wrong password was accepted";
  }
  catch (const Exception& e)
  {
    const std::string message = e.what();
    EXPECT_EQ(e.GetCode(), ErrorCode::DatabaseError);
    EXPECT_NE(message.find("password authentication failed"), std::string::npos) << message;
    EXPECT_NE(message.find("<redacted>"), std::string::npos) << message;
    EXPECT_EQ(message.find("wrong-password-123"), std::string::npos) << message;
  }
}


TEST_F(PostgreSqlOutboxTest, UnreachableServerNamesRedactedDatabase)
{
  const std::string url = WithClosedPort(url_);
  try
  {
    Outbox outbox(url, "node-a");
    FAIL() << "a closed port was accepted";
  }
  catch (const Exception& e)
  {
    const std::string message = e.what();
    EXPECT_EQ(e.GetCode(), ErrorCode::DatabaseError);
    EXPECT_NE(message.find("cannot connect"), std::string::npos) << message;
    EXPECT_NE(message.find("check that the server runs"), std::string::npos) << message;
    EXPECT_EQ(message.find(GetPassword(url_)), std::string::npos) << message;
  }
}


TEST_F(PostgreSqlOutboxTest, MalformedUrlIsBadConfiguration)
{
  try
  {
    Outbox outbox("postgresql://user:secret-pass@127.0.0.1:5432/db?sslmod=require", "node-a");
    FAIL() << "a malformed URL was accepted";
  }
  catch (const Exception& e)
  {
    const std::string message = e.what();
    EXPECT_EQ(e.GetCode(), ErrorCode::BadConfiguration);
    EXPECT_NE(message.find("invalid PostgreSQL connection string"), std::string::npos) << message;
    EXPECT_EQ(message.find("secret-pass"), std::string::npos) << message;
  }
}


TEST(SqlDialectTest, PlaceholdersAndTypesAreAdapted)
{
  EXPECT_EQ(AdaptSqlToPostgreSql("SELECT a FROM t WHERE b = ?1 AND c = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = $12");
  EXPECT_EQ(AdaptSqlToPostgreSql("UPDATE t SET m = '?1 stays' WHERE id = ?2"),
            "UPDATE t SET m = '?1 stays' WHERE id = $2");
  EXPECT_EQ(
      AdaptSqlToPostgreSql("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER)"),
      "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT)");
  EXPECT_EQ(AdaptSqlToPostgreSql("CREATE TABLE p (name TEXT, value NOT NULL)"),
            "CREATE TABLE p (name TEXT, value TEXT NOT NULL)");
  EXPECT_EQ(AdaptSqlToPostgreSql("SELECT integers FROM t"), "SELECT integers FROM t");
}


TEST(SqlDialectTest, ConnectionStringsAreRecognized)
{
  EXPECT_TRUE(IsPostgreSqlConnectionString("postgresql://user:pass@db:5432/orthanc"));
  EXPECT_TRUE(IsPostgreSqlConnectionString("postgres://db/orthanc"));
  EXPECT_TRUE(IsPostgreSqlConnectionString("host=db dbname=orthanc"));
  EXPECT_TRUE(IsPostgreSqlConnectionString("  dbname = orthanc user=orthanc"));
  EXPECT_FALSE(IsPostgreSqlConnectionString(""));
  EXPECT_FALSE(IsPostgreSqlConnectionString("/var/lib/orthanc/db/azure-dicom-outbox.db"));
  EXPECT_FALSE(IsPostgreSqlConnectionString("outbox.db"));
  EXPECT_FALSE(IsPostgreSqlConnectionString("folder=x/outbox.db"));
}


TEST(OutboxJsonTest, ClaimedByNamesNode)
{
  OutboxItem item;
  item.state = ItemState::Sending;
  item.claimedBy = "node-a";
  EXPECT_EQ(ToJson(item)["ClaimedBy"].asString(), "node-a");

  item.state = ItemState::Pending;
  item.claimedBy.clear();
  EXPECT_TRUE(ToJson(item)["ClaimedBy"].isNull());
}
