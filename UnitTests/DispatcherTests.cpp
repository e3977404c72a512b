#include "Common/Clock.h"
#include "Common/Exception.h"
#include "Sync/Dispatcher.h"

#include "TestSupport.h"

#include <gtest/gtest.h>

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

using namespace AzureDicom;

namespace
{
const char* const FILE_PREFIX = "DICM:";

class CollectingLogger : public ILogger
{
public:
  void Info(const std::string& message) override
  {
    lines.push_back("I " + message);
  }

  void Warning(const std::string& message) override
  {
    lines.push_back("W " + message);
  }

  void Error(const std::string& message) override
  {
    lines.push_back("E " + message);
  }

  bool Contains(const std::string& text) const
  {
    return std::any_of(lines.begin(), lines.end(),
                       [&text](const std::string& line)
                       { return line.find(text) != std::string::npos; });
  }

  std::vector<std::string> lines;
};


// Serves /instances/{id}/file with the content "DICM:<SOP Instance UID>".
// The 128-byte preamble of the fake DICOM files, after which "DICM" comes as in a real file.
const std::string FAKE_PREAMBLE(128, 'P');


// Returns the size of the fake file of an instance that has no padding.
uint64_t GetFakeFileSize(const std::string& id)
{
  return FAKE_PREAMBLE.size() + std::strlen(FILE_PREFIX) + id.size();
}


// Returns the Orthanc ID in /instances/{id}/... .
std::string GetInstanceIdOfUri(const std::string& uri)
{
  const size_t start = std::strlen("/instances/");
  return uri.substr(start, uri.find('/', start) - start);
}


// Returns the fake DICOM file of an instance: a preamble and "DICM:<id>", padded after a CRLF to
// the size that the test queued it with, so that GetPartUids() still finds the ID. The same
// bytes are served as /file and as the stored attachment (uncompressed storage).
std::string MakeFakeFile(const std::string& id, const std::map<std::string, uint64_t>* sizes)
{
  std::string file = FAKE_PREAMBLE + FILE_PREFIX + id;
  if (sizes != nullptr)
  {
    const auto size = sizes->find(id);
    if (size != sizes->end() && size->second >= file.size() + 2)
    {
      file += "\r\n" + std::string(size->second - file.size() - 2, 'x');
    }
  }
  return file;
}


class FakeOrthanc : public IOrthancGateway
{
public:
  bool GetJson(Json::Value& answer, const std::string& uri) override
  {
    const auto found = jsonAnswers.find(uri);
    if (found == jsonAnswers.end())
    {
      return false;
    }
    answer = found->second;
    return true;
  }

  bool GetBinary(std::string& answer, const std::string& uri) override
  {
    reads++;
    const std::string id = GetInstanceIdOfUri(uri);
    if (deleted.count(id) > 0)
    {
      return false;
    }
    answer = MakeFakeFile(id, sizes);
    return true;
  }

  std::set<std::string> deleted;
  std::map<std::string, Json::Value> jsonAnswers;  // GetJson() fails for a URI not listed here
  unsigned int reads = 0;
  const std::map<std::string, uint64_t>* sizes = nullptr;  // file sizes by Orthanc ID
};


// Returns the SOP Instance UIDs of the parts of a body built from FakeOrthanc's files.
std::vector<std::string> GetPartUids(const std::string& body)
{
  std::vector<std::string> uids;
  size_t position = 0;
  while ((position = body.find(FILE_PREFIX, position)) != std::string::npos)
  {
    position += std::strlen(FILE_PREFIX);
    const size_t end = body.find("\r\n", position);
    uids.push_back(body.substr(position, end - position));
  }
  return uids;
}


class FakeSender : public IStowSender
{
public:
  using Handler = std::function<HttpResponse(const std::vector<std::string>& uids)>;

  explicit FakeSender(Handler handler) : handler_(std::move(handler))
  {
  }

  HttpResponse Post(const std::string& body, const std::string& contentType) override
  {
    contentTypes.push_back(contentType);
    requests.push_back(GetPartUids(body));
    return handler_(requests.back());
  }

  HttpResponse Put(const std::string& body, const std::string& contentType) override
  {
    methods.push_back("PUT");
    return Post(body, contentType);
  }

  HttpResponse Delete(const std::string& url) override
  {
    deletes.push_back(url);
    HttpResponse response;
    response.status = deleteStatus;
    return response;
  }

  void InvalidateToken() override
  {
    invalidations++;
  }

  std::vector<std::string> methods;  // "PUT" for each upsert
  std::vector<std::string> deletes;  // the URL of each DELETE
  long deleteStatus = 204;
  std::vector<std::vector<std::string>> requests;
  std::vector<std::string> contentTypes;
  unsigned int invalidations = 0;

private:
  Handler handler_;
};


Json::Value MakeSequence(const std::vector<std::string>& uids, unsigned int reason,
                         const char* reasonTag)
{
  Json::Value sequence;
  sequence["vr"] = "SQ";
  sequence["Value"] = Json::arrayValue;
  for (const std::string& uid : uids)
  {
    Json::Value item;
    item["00081155"]["vr"] = "UI";
    item["00081155"]["Value"].append(uid);
    if (reason != 0)
    {
      item[reasonTag]["vr"] = "US";
      item[reasonTag]["Value"].append(reason);
    }
    sequence["Value"].append(item);
  }
  return sequence;
}


// A response of the service: referenced instances, and failed ones with one reason.
HttpResponse MakeAnswer(long status, const std::vector<std::string>& referenced,
                        const std::vector<std::string>& failed = {}, unsigned int reason = 0)
{
  Json::Value dataset(Json::objectValue);
  if (!referenced.empty())
  {
    dataset["00081199"] = MakeSequence(referenced, 0, "");
  }
  if (!failed.empty())
  {
    dataset["00081198"] = MakeSequence(failed, reason, "00081197");
  }

  HttpResponse response;
  response.status = status;
  response.headers["content-type"] = "application/dicom+json";
  response.body = dataset.toStyledString();
  return response;
}


HttpResponse MakeError(long status, const std::string& retryAfter = "")
{
  HttpResponse response;
  response.status = status;
  response.headers["content-type"] = "text/plain";
  if (!retryAfter.empty())
  {
    response.headers["retry-after"] = retryAfter;
  }
  response.body = "error " + std::to_string(status);
  return response;
}


class DispatcherTest : public ::testing::Test
{
protected:
  void SetUp() override
  {
    char pattern[] = "/tmp/dispatcher-test-XXXXXX";
    directory_ = mkdtemp(pattern);
    outbox_ = std::make_unique<Outbox>(directory_ + "/outbox.db");
    orthanc_.sizes = &fileSizes_;

    settings_.workers = 1;
    settings_.maxInstancesPerRequest = 10;
    settings_.maxRequestBytes = 1024 * 1024;
    settings_.leaseSeconds = 60;
    settings_.retry.initialDelaySeconds = 10;
    settings_.retry.maxDelaySeconds = 100;
    settings_.retry.maxAttempts = 3;
    settings_.destination = "https://dicom.example/v2/studies";
    settings_.principal = "11111111-2222-3333-4444-555555555555";
  }

  void TearDown() override
  {
    dispatcher_.reset();
    outbox_.reset();
    std::system(("rm -rf " + directory_).c_str());
  }

  Dispatcher& GetDispatcher()
  {
    if (!dispatcher_)
    {
      dispatcher_ = std::make_unique<Dispatcher>(*outbox_, orthanc_, logger_, settings_,
                                                 [] { return std::unique_ptr<IStowSender>(); });
    }
    return *dispatcher_;
  }

  // Queues instances whose Orthanc ID is their SOP Instance UID, each of `size` bytes, or of the
  // size of its fake file when size is 0. The fake files have that size.
  void QueueInstances(const std::vector<std::string>& uids, uint64_t size = 0)
  {
    std::vector<NewInstance> instances;
    for (const std::string& uid : uids)
    {
      NewInstance instance;
      instance.orthancId = uid;
      instance.sopInstanceUid = uid;
      instance.studyInstanceUid = "1.2.3";
      instance.orthancStudyId = "study";
      instance.size = size > 0 ? size : GetFakeFileSize(uid);
      fileSizes_[uid] = instance.size;
      instances.push_back(instance);
    }
    outbox_->Queue(instances, QueueMode::InsertMissing, NowMs());
  }

  OutboxItem GetItem(const std::string& uid)
  {
    OutboxItem item;
    EXPECT_TRUE(outbox_->FindItem(item, uid)) << uid;
    return item;
  }

  std::string directory_;
  std::unique_ptr<Outbox> outbox_;
  std::map<std::string, uint64_t> fileSizes_;  // by Orthanc ID, what the fake gateways return
  FakeOrthanc orthanc_;
  CollectingLogger logger_;
  DispatcherSettings settings_;
  std::unique_ptr<Dispatcher> dispatcher_;
};
}  // namespace


TEST_F(DispatcherTest, AllStoredAreMirrored)
{
  QueueInstances({"1.1", "1.2", "1.3"});
  FakeSender sender([](const std::vector<std::string>& uids) { return MakeAnswer(200, uids); });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  ASSERT_EQ(1u, sender.requests.size());
  EXPECT_EQ(3u, sender.requests[0].size());
  EXPECT_EQ(0u, sender.contentTypes[0].find("multipart/related; type=\"application/dicom\""));

  for (const char* uid : {"1.1", "1.2", "1.3"})
  {
    const OutboxItem item = GetItem(uid);
    EXPECT_EQ(ItemState::Mirrored, item.state) << uid;
    EXPECT_EQ(200, item.statusCode);
    EXPECT_EQ(settings_.destination, item.destination);
    EXPECT_GT(item.sentAt, 0);
  }
  EXPECT_FALSE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(3u, GetDispatcher().GetStatus().instances);
}


TEST_F(DispatcherTest, ExistingInstanceIsAlreadyPresent)
{
  QueueInstances({"2.1", "2.2"});
  FakeSender sender([](const std::vector<std::string>&) {
    return MakeAnswer(202, {"2.1"}, {"2.2"}, REASON_ALREADY_EXISTS);
  });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(ItemState::Mirrored, GetItem("2.1").state);
  EXPECT_EQ(ItemState::AlreadyPresent, GetItem("2.2").state);
  EXPECT_EQ(REASON_ALREADY_EXISTS, GetItem("2.2").failureReason);
  EXPECT_FALSE(GetDispatcher().ProcessOneBatch(sender));
}


TEST_F(DispatcherTest, ValidationFailureIsNotRetried)
{
  QueueInstances({"3.1"});
  FakeSender sender([](const std::vector<std::string>& uids) {
    return MakeAnswer(409, {}, uids, REASON_VALIDATION_FAILED);
  });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  const OutboxItem item = GetItem("3.1");
  EXPECT_EQ(ItemState::Failed, item.state);
  EXPECT_EQ(REASON_VALIDATION_FAILED, item.failureReason);
  EXPECT_EQ(409, item.statusCode);
  EXPECT_EQ(1u, item.attempts);
  EXPECT_FALSE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(1u, sender.requests.size());
}


TEST_F(DispatcherTest, UnconfirmedInstanceIsRetriedThenFailed)
{
  QueueInstances({"4.1", "4.2"});
  FakeSender sender([](const std::vector<std::string>&) { return MakeAnswer(200, {"4.1"}); });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(ItemState::Mirrored, GetItem("4.1").state);

  OutboxItem item = GetItem("4.2");
  EXPECT_EQ(ItemState::Pending, item.state);
  EXPECT_EQ(1u, item.attempts);
  EXPECT_GE(item.nextAttemptAt, NowMs() + 4000);  // half of InitialDelaySeconds at least

  // Not due yet: nothing to claim.
  EXPECT_FALSE(GetDispatcher().ProcessOneBatch(sender));

  // Make it due at once (claim it "later", release it) until MaxAttempts is reached.
  for (unsigned int attempt = 2; attempt <= settings_.retry.maxAttempts; attempt++)
  {
    const int64_t later = NowMs() + 1000000;
    std::vector<OutboxItem> claimed = outbox_->ClaimBatch(10, 1 << 20, later, later + 1000);
    ASSERT_EQ(1u, claimed.size());
    outbox_->Release({claimed[0].id}, 0, NowMs());
    ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  }

  item = GetItem("4.2");
  EXPECT_EQ(ItemState::Failed, item.state);
  EXPECT_EQ(settings_.retry.maxAttempts, item.attempts);
  EXPECT_NE(std::string::npos, item.message.find("not confirmed")) << item.message;
}


TEST_F(DispatcherTest, TransientErrorWaitsWithoutAttempts)
{
  QueueInstances({"5.1", "5.2"});
  FakeSender sender([](const std::vector<std::string>&) { return MakeError(429, "30"); });

  const int64_t before = NowMs();
  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  for (const char* uid : {"5.1", "5.2"})
  {
    const OutboxItem item = GetItem(uid);
    EXPECT_EQ(ItemState::Pending, item.state) << uid;
    EXPECT_EQ(0u, item.attempts) << uid;
  }

  const DispatcherStatus status = GetDispatcher().GetStatus();
  EXPECT_EQ("Waiting", status.state);
  EXPECT_EQ(429, status.lastErrorStatus);
  EXPECT_GE(status.waitUntil, before + 30000);
  EXPECT_LE(status.waitUntil, NowMs() + 30000);
}


TEST_F(DispatcherTest, NetworkErrorWaitsWithoutAttempts)
{
  QueueInstances({"6.1"});
  FakeSender sender([](const std::vector<std::string>&) -> HttpResponse {
    throw Exception(ErrorCode::NetworkError, "POST https://dicom.example/v2/studies: refused");
  });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(ItemState::Pending, GetItem("6.1").state);
  EXPECT_EQ(0u, GetItem("6.1").attempts);
  EXPECT_EQ("Waiting", GetDispatcher().GetStatus().state);
  EXPECT_NE(std::string::npos, GetDispatcher().GetStatus().lastError.find("refused"));
}


TEST_F(DispatcherTest, NetworkErrorCountsRequest)
{
  QueueInstances({"6.2"});
  FakeSender sender(
      [](const std::vector<std::string>&) -> HttpResponse {
        throw Exception(ErrorCode::NetworkError, "POST https://dicom.example/v2/studies: refused");
      });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  const RequestSummary summary = GetDispatcher().SummarizeRequests(NowMs(), 60);

  EXPECT_EQ(1u, summary.requests);
  EXPECT_EQ(1u, summary.errorsByStatus.at(0));
}


TEST_F(DispatcherTest, MissingTokenCountsNoRequest)
{
  QueueInstances({"6.3"});
  FakeSender sender(
      [](const std::vector<std::string>&) -> HttpResponse
      {
        throw Exception(ErrorCode::Unauthorized,
                        "ClientSecret credential: the token request failed with HTTP 401");
      });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  const RequestSummary summary = GetDispatcher().SummarizeRequests(NowMs(), 60);

  EXPECT_EQ(0u, summary.requests);
  EXPECT_EQ(0u, summary.errors);
  EXPECT_EQ(ItemState::Pending, GetItem("6.3").state);
  EXPECT_EQ("Waiting", GetDispatcher().GetStatus().state);
  EXPECT_NE(std::string::npos, GetDispatcher().GetStatus().lastError.find("token request"));
}


TEST_F(DispatcherTest, RejectedTokenIsRefreshedOnce)
{
  QueueInstances({"7.1"});
  unsigned int calls = 0;
  FakeSender sender([&calls](const std::vector<std::string>& uids) {
    return ++calls == 1 ? MakeError(401) : MakeAnswer(200, uids);
  });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(1u, sender.invalidations);
  EXPECT_EQ(2u, sender.requests.size());
  EXPECT_EQ(ItemState::Mirrored, GetItem("7.1").state);
}


TEST_F(DispatcherTest, SecondRejectedTokenWaits)
{
  QueueInstances({"8.1"});
  FakeSender sender([](const std::vector<std::string>&) { return MakeError(401); });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(2u, sender.requests.size());
  EXPECT_EQ(ItemState::Pending, GetItem("8.1").state);
  EXPECT_EQ(0u, GetItem("8.1").attempts);
  EXPECT_EQ("Waiting", GetDispatcher().GetStatus().state);
  EXPECT_EQ(401, GetDispatcher().GetStatus().lastErrorStatus);
}


TEST_F(DispatcherTest, ForbiddenNamesPrincipal)
{
  QueueInstances({"9.1"});
  FakeSender sender([](const std::vector<std::string>&) { return MakeError(403); });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  const DispatcherStatus status = GetDispatcher().GetStatus();
  EXPECT_EQ("Waiting", status.state);
  EXPECT_NE(std::string::npos, status.pauseReason.find(settings_.principal)) << status.pauseReason;
  EXPECT_EQ(0u, GetItem("9.1").attempts);
}


TEST_F(DispatcherTest, TooLargeSplitsBatch)
{
  QueueInstances({"10.1", "10.2", "10.3", "10.4"});
  FakeSender sender([](const std::vector<std::string>& uids) {
    return uids.size() > 1 ? MakeError(413) : MakeAnswer(200, uids);
  });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  for (const char* uid : {"10.1", "10.2", "10.3", "10.4"})
  {
    EXPECT_EQ(ItemState::Mirrored, GetItem(uid).state) << uid;
  }
  // 4 -> 2 + 2 -> 1 + 1 + 1 + 1: three refused requests and four accepted ones.
  EXPECT_EQ(7u, sender.requests.size());
  EXPECT_EQ("Running", GetDispatcher().GetStatus().state);
}


TEST_F(DispatcherTest, TooLargeAloneFails)
{
  QueueInstances({"11.1"});
  FakeSender sender([](const std::vector<std::string>&) { return MakeError(413); });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(ItemState::Failed, GetItem("11.1").state);
  EXPECT_EQ(413, GetItem("11.1").statusCode);
}


TEST_F(DispatcherTest, DeletedInstanceIsSkipped)
{
  QueueInstances({"12.1", "12.2"});
  orthanc_.deleted.insert("12.1");
  FakeSender sender([](const std::vector<std::string>& uids) { return MakeAnswer(200, uids); });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(ItemState::Skipped, GetItem("12.1").state);
  EXPECT_EQ(ItemState::Mirrored, GetItem("12.2").state);
  ASSERT_EQ(1u, sender.requests.size());
  EXPECT_EQ(std::vector<std::string>{"12.2"}, sender.requests[0]);
}


TEST_F(DispatcherTest, OverServiceLimitFailsUnsent)
{
  QueueInstances({"13.1"}, SERVICE_MAX_REQUEST_BYTES + 1);
  FakeSender sender([](const std::vector<std::string>& uids) { return MakeAnswer(200, uids); });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(ItemState::Failed, GetItem("13.1").state);
  EXPECT_NE(std::string::npos, GetItem("13.1").message.find("2 GB"));
  EXPECT_TRUE(sender.requests.empty());
  EXPECT_EQ(0u, orthanc_.reads);
}


TEST_F(DispatcherTest, ByteLimitBoundsBatch)
{
  settings_.maxRequestBytes = 450;
  QueueInstances({"14.1", "14.2", "14.3", "14.4", "14.5"}, 200);
  FakeSender sender([](const std::vector<std::string>& uids) { return MakeAnswer(200, uids); });

  while (GetDispatcher().ProcessOneBatch(sender))
  {
  }
  ASSERT_EQ(3u, sender.requests.size());
  EXPECT_EQ(2u, sender.requests[0].size());
  EXPECT_EQ(2u, sender.requests[1].size());
  EXPECT_EQ(1u, sender.requests[2].size());
}


TEST_F(DispatcherTest, CountLimitBoundsBatch)
{
  settings_.maxInstancesPerRequest = 2;
  QueueInstances({"15.1", "15.2", "15.3"});
  FakeSender sender([](const std::vector<std::string>& uids) { return MakeAnswer(200, uids); });

  while (GetDispatcher().ProcessOneBatch(sender))
  {
  }
  ASSERT_EQ(2u, sender.requests.size());
  EXPECT_EQ(2u, sender.requests[0].size());
  EXPECT_EQ(1u, sender.requests[1].size());
}


TEST_F(DispatcherTest, ProcessingFailureBacksOff)
{
  QueueInstances({"16.1"});
  FakeSender sender([](const std::vector<std::string>& uids) {
    return MakeAnswer(409, {}, uids, REASON_PROCESSING_FAILURE);
  });

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));
  const OutboxItem item = GetItem("16.1");
  EXPECT_EQ(ItemState::Pending, item.state);
  EXPECT_EQ(1u, item.attempts);
  EXPECT_EQ(REASON_PROCESSING_FAILURE, item.failureReason);
  EXPECT_GT(item.nextAttemptAt, NowMs());
}


TEST_F(DispatcherTest, WorkersStopWhenPaused)
{
  settings_.workers = 2;
  unsigned int posts = 0;
  std::mutex mutex;
  dispatcher_ = std::make_unique<Dispatcher>(*outbox_, orthanc_, logger_, settings_, [&]() {
    return std::make_unique<FakeSender>([&](const std::vector<std::string>& uids) {
      std::lock_guard<std::mutex> lock(mutex);
      posts++;
      return MakeAnswer(200, uids);
    });
  });

  dispatcher_->Pause();
  dispatcher_->Start();
  QueueInstances({"17.1", "17.2"});
  dispatcher_->Wake();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ("Paused", dispatcher_->GetStatus().state);
  EXPECT_EQ(ItemState::Pending, GetItem("17.1").state);

  dispatcher_->Resume();
  for (int i = 0; i < 100 && GetItem("17.2").state != ItemState::Mirrored; i++)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(ItemState::Mirrored, GetItem("17.1").state);
  EXPECT_EQ(ItemState::Mirrored, GetItem("17.2").state);
  dispatcher_->Stop();

  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_GE(posts, 1u);
}


TEST_F(DispatcherTest, FullRequestsWakeAsManyWorkers)
{
  // Each request waits for the others to be in progress too, for at most 600 ms. Workers that
  // Wake() left asleep would only claim after their idle wait of 1 s.
  settings_.workers = 3;
  std::mutex mutex;
  std::condition_variable changed;
  unsigned int inProgress = 0;
  unsigned int maxInProgress = 0;
  std::vector<size_t> requestSizes;
  dispatcher_ = std::make_unique<Dispatcher>(*outbox_, orthanc_, logger_, settings_, [&]() {
    return std::make_unique<FakeSender>([&](const std::vector<std::string>& uids) {
      std::unique_lock<std::mutex> lock(mutex);
      requestSizes.push_back(uids.size());
      maxInProgress = std::max(maxInProgress, ++inProgress);
      changed.notify_all();
      changed.wait_for(lock, std::chrono::milliseconds(600), [&] { return inProgress == 3; });
      const HttpResponse answer = MakeAnswer(200, uids);
      inProgress--;
      return answer;
    });
  });

  dispatcher_->Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the workers wait, idle
  std::vector<std::string> uids;
  for (int i = 0; i < 30; i++)
  {
    uids.push_back("18." + std::to_string(i + 1));
  }
  QueueInstances(uids);
  dispatcher_->Wake(uids.size());

  for (int i = 0; i < 150 && GetItem("18.30").state != ItemState::Mirrored; i++)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  dispatcher_->Stop();

  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(3u, maxInProgress);
  EXPECT_EQ((std::vector<size_t>{10, 10, 10}), requestSizes);
  for (const std::string& uid : uids)
  {
    EXPECT_EQ(ItemState::Mirrored, GetItem(uid).state) << uid;
  }
}


TEST_F(DispatcherTest, ResumeEndsBackoff)
{
  std::mutex mutex;
  unsigned int posts = 0;
  dispatcher_ = std::make_unique<Dispatcher>(*outbox_, orthanc_, logger_, settings_, [&]() {
    return std::make_unique<FakeSender>([&](const std::vector<std::string>& uids) {
      std::lock_guard<std::mutex> lock(mutex);
      return ++posts == 1 ? MakeError(503, "60") : MakeAnswer(200, uids);
    });
  });

  QueueInstances({"18.1"});
  dispatcher_->Start();
  for (int i = 0; i < 100 && dispatcher_->GetStatus().state != "Waiting"; i++)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ("Waiting", dispatcher_->GetStatus().state);
  EXPECT_EQ(ItemState::Pending, GetItem("18.1").state);

  dispatcher_->Resume();
  for (int i = 0; i < 100 && GetItem("18.1").state != ItemState::Mirrored; i++)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(ItemState::Mirrored, GetItem("18.1").state);
  EXPECT_EQ("Running", dispatcher_->GetStatus().state);
  dispatcher_->Stop();
}


// OnConflict, service deletions and mirrored deletes.

#include "Sync/DeletionWorker.h"
#include "Sync/ServiceDeletion.h"

#include <deque>
#include <memory>
#include <mutex>

namespace
{
// Hex MD5 of FakeOrthanc's file of the instance "30.1" (the preamble and "DICM:30.1").
const char* const MD5_OF_30_1 = "b2a658c0e2e652595dd30ea42049d5a9";
// A digest that differs from that of every file of FakeOrthanc.
const char* const OTHER_MD5 = "ffffffffffffffffffffffffffffffff";
const char* const STUDY_UID = "1.2.3";
const char* const SERIES_UID = "1.2.3.4";


// Records every request in order ("POST", "PUT" or "DELETE <url>"). POST and PUT return the
// handler's response, but PUT returns status putStatus alone when it is not 0. DELETE returns
// the statuses of deleteStatuses in turn, repeating the last one, or throws NetworkError when
// deleteFails is set.
class RecordingSender : public IStowSender
{
public:
  using Handler = std::function<HttpResponse(const std::vector<std::string>& uids)>;

  explicit RecordingSender(Handler handler) : handler_(std::move(handler)) {}

  HttpResponse Post(const std::string& body, const std::string&) override
  {
    calls.push_back("POST");
    requests.push_back(GetPartUids(body));
    return handler_(requests.back());
  }

  HttpResponse Put(const std::string& body, const std::string&) override
  {
    calls.push_back("PUT");
    requests.push_back(GetPartUids(body));
    if (putStatus != 0)
    {
      return MakeError(putStatus);
    }
    return handler_(requests.back());
  }

  HttpResponse Delete(const std::string& url) override
  {
    calls.push_back("DELETE " + url);
    if (deleteFails)
    {
      throw Exception(ErrorCode::NetworkError, "DELETE " + url + ": connection refused");
    }

    HttpResponse response;
    response.status = deleteStatuses.front();
    response.body = deleteBody;
    if (deleteStatuses.size() > 1)
    {
      deleteStatuses.pop_front();
    }
    return response;
  }

  void InvalidateToken() override
  {
    invalidations++;
  }

  std::vector<std::string> calls;
  std::vector<std::vector<std::string>> requests;
  long putStatus = 0;
  std::deque<long> deleteStatuses{204};
  std::string deleteBody;
  bool deleteFails = false;
  unsigned int invalidations = 0;

private:
  Handler handler_;
};


HttpResponse AnswerAllStored(const std::vector<std::string>& uids)
{
  return MakeAnswer(200, uids);
}


HttpResponse AnswerAllPresent(const std::vector<std::string>& uids)
{
  return MakeAnswer(202, {}, uids, REASON_ALREADY_EXISTS);
}


NewInstance MakeNewInstance(const std::string& uid, const std::string& contentMd5 = "")
{
  NewInstance instance;
  instance.orthancId = uid;
  instance.sopInstanceUid = uid;
  instance.seriesInstanceUid = SERIES_UID;
  instance.studyInstanceUid = STUDY_UID;
  instance.orthancStudyId = "study";
  instance.size = GetFakeFileSize(uid);
  instance.contentMd5 = contentMd5;
  return instance;
}


// Sends items of instances that Orthanc stored again with other content, after a first copy.
class DispatcherConflictTest : public DispatcherTest
{
protected:
  void SetUp() override
  {
    DispatcherTest::SetUp();
    UseTarget(Destination{"https://dicom.example", "v2", ""});
  }

  void UseTarget(const Destination& target)
  {
    dispatcher_.reset();
    settings_.target = target;
    settings_.destination = target.GetDicomWebBase() + "/studies";
  }

  // Sends the instance once and returns its Mirrored item.
  OutboxItem MirrorFirstCopy(const std::string& uid)
  {
    outbox_->Queue({MakeNewInstance(uid)}, QueueMode::InsertMissing, NowMs());
    FakeSender sender(AnswerAllStored);
    EXPECT_TRUE(GetDispatcher().ProcessOneBatch(sender));
    const OutboxItem item = GetItem(uid);
    EXPECT_EQ(ItemState::Mirrored, item.state) << uid;
    return item;
  }

  // Makes the item Pending again, as the change follower does when Orthanc stores other
  // content for it.
  void StoreOtherContent(const std::string& uid)
  {
    outbox_->QueueFromChanges({MakeNewInstance(uid, OTHER_MD5)}, 100, NowMs());
    const OutboxItem item = GetItem(uid);
    EXPECT_EQ(ItemState::Pending, item.state) << uid;
    EXPECT_TRUE(item.contentChanged) << uid;
  }

  std::string GetInstanceUrl(const Destination& destination, const std::string& uid)
  {
    return destination.GetInstanceUrl(STUDY_UID, SERIES_UID, uid);
  }
};
}  // namespace


TEST_F(DispatcherConflictTest, OutcomeRecordsSentToAndDigest)
{
  const OutboxItem item = MirrorFirstCopy("30.1");

  EXPECT_EQ(settings_.target, item.sentTo);
  EXPECT_EQ(MD5_OF_30_1, item.contentMd5);
  EXPECT_EQ(1, item.createdSequence);
  EXPECT_FALSE(item.contentChanged);
  EXPECT_FALSE(item.contentConflict);
  EXPECT_EQ("https://dicom.example/v2/studies", item.destination);
}


TEST_F(DispatcherConflictTest, AlreadyPresentRecordsDigest)
{
  outbox_->Queue({MakeNewInstance("30.1")}, QueueMode::InsertMissing, NowMs());
  FakeSender sender(AnswerAllPresent);

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  const OutboxItem item = GetItem("30.1");
  EXPECT_EQ(ItemState::AlreadyPresent, item.state);
  EXPECT_EQ(settings_.target, item.sentTo);
  EXPECT_EQ(MD5_OF_30_1, item.contentMd5);
  EXPECT_EQ(0, item.createdSequence);
  EXPECT_FALSE(item.contentConflict);
}


// Orthanc's digest of an attachment, which the outbox keeps with the UUID, is recorded for the
// file read under that UUID (the first part of a request and the later ones). A file read any
// other way is hashed.
TEST_F(DispatcherConflictTest, FileReadUnderUuidRecordsStoredDigest)
{
  const std::string storage = directory_ + "/storage";
  const std::map<std::string, std::string> uuids = {
      {"30.1", "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b"},
      {"31.1", "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5c"},
      {"32.1", "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5d"}};  // no file in the storage directory

  std::vector<NewInstance> instances;
  for (const auto& [uid, uuid] : uuids)
  {
    if (uid != "32.1")
    {
      const std::string folder = storage + "/" + uuid.substr(0, 2) + "/" + uuid.substr(2, 2);
      ASSERT_EQ(0, std::system(("mkdir -p " + folder).c_str()));
      std::ofstream(folder + "/" + uuid, std::ios::binary) << MakeFakeFile(uid, nullptr);
    }
    NewInstance instance = MakeNewInstance(uid);
    instance.fileUuid = uuid;
    instance.fileMd5 = OTHER_MD5;
    instances.push_back(instance);
  }
  outbox_->Queue(instances, QueueMode::InsertMissing, NowMs());
  GetDispatcher().SetStorageDirectory(storage);
  FakeSender sender(AnswerAllStored);

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  ASSERT_EQ(1u, sender.requests.size());
  EXPECT_EQ(3u, sender.requests[0].size());
  EXPECT_EQ(OTHER_MD5, GetItem("30.1").contentMd5);
  EXPECT_EQ(OTHER_MD5, GetItem("31.1").contentMd5);
  // No file under its UUID, so the file came from Orthanc's REST API and was hashed.
  const OutboxItem missing = GetItem("32.1");
  EXPECT_EQ(ItemState::Mirrored, missing.state);
  EXPECT_NE(OTHER_MD5, missing.contentMd5);
  EXPECT_EQ(32u, missing.contentMd5.size());
}


TEST_F(DispatcherConflictTest, FileFoundByLookupRecordsStoredDigest)
{
  // An item queued without its attachment, as the change follower queues a stored instance.
  const std::string storage = directory_ + "/storage";
  const std::string uuid = "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b";
  const std::string folder = storage + "/" + uuid.substr(0, 2) + "/" + uuid.substr(2, 2);
  ASSERT_EQ(0, std::system(("mkdir -p " + folder).c_str()));
  std::ofstream(folder + "/" + uuid, std::ios::binary) << MakeFakeFile("30.1", nullptr);

  Json::Value info;
  info["CompressedSize"] = Json::UInt64(GetFakeFileSize("30.1"));
  info["UncompressedSize"] = Json::UInt64(GetFakeFileSize("30.1"));
  info["Uuid"] = uuid;
  info["UncompressedMD5"] = OTHER_MD5;
  orthanc_.jsonAnswers["/instances/30.1/attachments/dicom/info"] = info;
  outbox_->Queue({MakeNewInstance("30.1")}, QueueMode::InsertMissing, NowMs());
  GetDispatcher().SetStorageDirectory(storage);
  FakeSender sender(AnswerAllStored);

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  ASSERT_EQ(1u, sender.requests.size());
  const OutboxItem item = GetItem("30.1");
  EXPECT_EQ(ItemState::Mirrored, item.state);
  // The digest comes from the lookup and the file from the storage directory, so no file or
  // digest is read through Orthanc's REST API.
  EXPECT_EQ(OTHER_MD5, item.contentMd5);
  EXPECT_EQ(0u, orthanc_.reads);
}


TEST_F(DispatcherConflictTest, KeepPostsAndRecordsConflict)
{
  settings_.onConflict = ConflictPolicy::Keep;
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  FakeSender sender(AnswerAllPresent);

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  ASSERT_EQ(1u, sender.requests.size());
  EXPECT_EQ(std::vector<std::string>{"30.1"}, sender.requests[0]);
  EXPECT_TRUE(sender.methods.empty());
  EXPECT_TRUE(sender.deletes.empty());

  const OutboxItem item = GetItem("30.1");
  EXPECT_EQ(ItemState::AlreadyPresent, item.state);
  EXPECT_TRUE(item.contentConflict);
  EXPECT_FALSE(item.contentChanged);
  EXPECT_EQ(REASON_ALREADY_EXISTS, item.failureReason);
  EXPECT_NE(std::string::npos, item.message.find("other content")) << item.message;
  EXPECT_NE(std::string::npos, item.message.find("OnConflict is Keep")) << item.message;
  // The copy found at the same destination is still the one that this plugin created.
  EXPECT_EQ(1, item.createdSequence);
  EXPECT_EQ(1u, outbox_->CountConflicts());
}


TEST_F(DispatcherConflictTest, KeepWithoutChangeIsNoConflict)
{
  settings_.onConflict = ConflictPolicy::Keep;
  outbox_->Queue({MakeNewInstance("30.1")}, QueueMode::InsertMissing, NowMs());
  FakeSender sender(AnswerAllPresent);

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  EXPECT_FALSE(GetItem("30.1").contentConflict);
  EXPECT_EQ(0u, outbox_->CountConflicts());
}


TEST_F(DispatcherConflictTest, ReplaceOnV2Puts)
{
  settings_.onConflict = ConflictPolicy::Replace;
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  FakeSender sender(AnswerAllStored);

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  EXPECT_EQ(std::vector<std::string>{"PUT"}, sender.methods);
  ASSERT_EQ(1u, sender.requests.size());
  EXPECT_EQ(std::vector<std::string>{"30.1"}, sender.requests[0]);
  EXPECT_TRUE(sender.deletes.empty());

  const OutboxItem item = GetItem("30.1");
  EXPECT_EQ(ItemState::Mirrored, item.state);
  EXPECT_FALSE(item.contentChanged);
  EXPECT_FALSE(item.contentConflict);
  EXPECT_EQ(2, item.createdSequence);
  EXPECT_EQ(MD5_OF_30_1, item.contentMd5);
}


TEST_F(DispatcherConflictTest, ReplaceSendsUnchangedWithPost)
{
  settings_.onConflict = ConflictPolicy::Replace;
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  outbox_->Queue({MakeNewInstance("31.1")}, QueueMode::InsertMissing, NowMs());
  RecordingSender sender(AnswerAllStored);

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  EXPECT_EQ((std::vector<std::string>{"POST", "PUT"}), sender.calls);
  ASSERT_EQ(2u, sender.requests.size());
  EXPECT_EQ(std::vector<std::string>{"31.1"}, sender.requests[0]);
  EXPECT_EQ(std::vector<std::string>{"30.1"}, sender.requests[1]);
  EXPECT_EQ(ItemState::Mirrored, GetItem("30.1").state);
  EXPECT_EQ(ItemState::Mirrored, GetItem("31.1").state);
}


TEST_F(DispatcherConflictTest, ReplaceWithoutUpsertDeletesFirst)
{
  settings_.onConflict = ConflictPolicy::Replace;
  const std::vector<std::pair<std::string, std::string>> cases = {{"v1", "30.1"}, {"", "31.1"}};

  for (const auto& [apiVersion, uid] : cases)
  {
    SCOPED_TRACE("ApiVersion \"" + apiVersion + "\"");
    const Destination target{"https://dicom.example", apiVersion, ""};
    UseTarget(target);
    const int64_t firstSequence = MirrorFirstCopy(uid).createdSequence;
    StoreOtherContent(uid);
    RecordingSender sender(AnswerAllStored);

    ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

    const std::vector<std::string> expected = {"DELETE " + GetInstanceUrl(target, uid), "POST"};
    EXPECT_EQ(expected, sender.calls);
    ASSERT_EQ(1u, sender.requests.size());
    EXPECT_EQ(std::vector<std::string>{uid}, sender.requests[0]);
    const OutboxItem item = GetItem(uid);
    EXPECT_EQ(ItemState::Mirrored, item.state);
    EXPECT_FALSE(item.contentChanged);
    EXPECT_GT(item.createdSequence, firstSequence);
  }
}


TEST_F(DispatcherConflictTest, ReplaceDeletesAtSentTo)
{
  settings_.onConflict = ConflictPolicy::Replace;
  const Destination first{"https://dicom.example", "v1", "a"};
  UseTarget(first);
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  const Destination second{"https://dicom.example", "v1", "b"};
  UseTarget(second);
  RecordingSender sender(AnswerAllStored);

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  ASSERT_EQ(2u, sender.calls.size());
  EXPECT_EQ(
      "DELETE https://dicom.example/v1/partitions/a/studies/1.2.3/series/1.2.3.4/"
      "instances/30.1",
      sender.calls[0]);
  EXPECT_EQ("POST", sender.calls[1]);
  EXPECT_EQ(second, GetItem("30.1").sentTo);
}


TEST_F(DispatcherConflictTest, ReplaceAfterGoneCopyPosts)
{
  settings_.onConflict = ConflictPolicy::Replace;
  UseTarget(Destination{"https://dicom.example", "v1", ""});
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  RecordingSender sender(AnswerAllStored);
  sender.deleteStatuses = {404};

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  ASSERT_EQ(2u, sender.calls.size());
  EXPECT_EQ("POST", sender.calls[1]);
  EXPECT_EQ(ItemState::Mirrored, GetItem("30.1").state);
}


TEST_F(DispatcherConflictTest, UpsertRefusedFallsBackToDelete)
{
  settings_.onConflict = ConflictPolicy::Replace;
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  RecordingSender sender(AnswerAllStored);
  sender.putStatus = 405;

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  const std::vector<std::string> expected = {
      "PUT", "DELETE " + GetInstanceUrl(settings_.target, "30.1"), "POST"};
  EXPECT_EQ(expected, sender.calls);
  const OutboxItem item = GetItem("30.1");
  EXPECT_EQ(ItemState::Mirrored, item.state);
  EXPECT_FALSE(item.contentChanged);
  EXPECT_EQ(MD5_OF_30_1, item.contentMd5);
}


TEST_F(DispatcherConflictTest, TransientDeleteWaits)
{
  settings_.onConflict = ConflictPolicy::Replace;
  UseTarget(Destination{"https://dicom.example", "v1", ""});
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  RecordingSender sender(AnswerAllStored);
  sender.deleteStatuses = {503};

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  ASSERT_EQ(1u, sender.calls.size());
  EXPECT_EQ(0u, sender.calls[0].find("DELETE "));
  const OutboxItem item = GetItem("30.1");
  EXPECT_EQ(ItemState::Pending, item.state);
  EXPECT_EQ(0u, item.attempts);
  EXPECT_TRUE(item.contentChanged);
  EXPECT_EQ(1, item.createdSequence);
  EXPECT_EQ("Waiting", GetDispatcher().GetStatus().state);
  EXPECT_EQ(503, GetDispatcher().GetStatus().lastErrorStatus);
}


TEST_F(DispatcherConflictTest, RejectedDeleteFailsItem)
{
  settings_.onConflict = ConflictPolicy::Replace;
  UseTarget(Destination{"https://dicom.example", "v1", ""});
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  RecordingSender sender(AnswerAllStored);
  sender.deleteStatuses = {400};
  sender.deleteBody = "invalid instance";

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  ASSERT_EQ(1u, sender.calls.size());
  const OutboxItem item = GetItem("30.1");
  EXPECT_EQ(ItemState::Failed, item.state);
  EXPECT_EQ(400, item.statusCode);
  EXPECT_NE(std::string::npos, item.message.find("cannot replace")) << item.message;
  EXPECT_NE(std::string::npos, item.message.find("invalid instance")) << item.message;
}


TEST_F(DispatcherConflictTest, PresentAfterReplaceIsConflict)
{
  settings_.onConflict = ConflictPolicy::Replace;
  UseTarget(Destination{"https://dicom.example", "v1", ""});
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  RecordingSender sender(AnswerAllPresent);

  ASSERT_TRUE(GetDispatcher().ProcessOneBatch(sender));

  const OutboxItem item = GetItem("30.1");
  EXPECT_EQ(ItemState::AlreadyPresent, item.state);
  EXPECT_TRUE(item.contentConflict);
  EXPECT_NE(std::string::npos, item.message.find("stored there again")) << item.message;
  EXPECT_EQ(0, item.createdSequence);
}


namespace
{
OutboxItem MakeSentItem(const Destination& sentTo, const std::string& destination)
{
  OutboxItem item;
  item.id = 7;
  item.instance = MakeNewInstance("5.6.7");
  item.state = ItemState::Mirrored;
  item.sentTo = sentTo;
  item.destination = destination;
  return item;
}


const Destination SENT_TO{"https://dicom.example", "v2", "p1"};
const char* const SENT_TO_URL =
    "https://dicom.example/v2/partitions/p1/studies/1.2.3/series/1.2.3.4/instances/5.6.7";
}  // namespace


TEST(ServiceDeletionTest, InstanceUrlUsesSentTo)
{
  const OutboxItem item = MakeSentItem(SENT_TO, "https://other.example/v1/studies");

  EXPECT_EQ(SENT_TO_URL, GetServiceInstanceUrl(item));
}


TEST(ServiceDeletionTest, InstanceUrlFromStowUrl)
{
  EXPECT_EQ("https://old.example/v1/studies/1.2.3/series/1.2.3.4/instances/5.6.7",
            GetServiceInstanceUrl(MakeSentItem(Destination{}, "https://old.example/v1/studies")));
  EXPECT_EQ("https://old.example/v1/partitions/x/studies/1.2.3/series/1.2.3.4/instances/5.6.7",
            GetServiceInstanceUrl(
                MakeSentItem(Destination{}, "https://old.example/v1/partitions/x/studies")));
  EXPECT_EQ("https://old.example/dicom-web/studies/1.2.3/series/1.2.3.4/instances/5.6.7",
            GetServiceInstanceUrl(MakeSentItem(Destination{}, "https://old.example/dicom-web")));
}


TEST(ServiceDeletionTest, StatusesAreClassified)
{
  struct Case
  {
    long status;
    DeletionStatus expected;
  };
  const std::vector<Case> cases = {
      {200, DeletionStatus::Deleted},   {202, DeletionStatus::Deleted},
      {204, DeletionStatus::Deleted},   {404, DeletionStatus::NotFound},
      {403, DeletionStatus::Transient}, {408, DeletionStatus::Transient},
      {429, DeletionStatus::Transient}, {500, DeletionStatus::Transient},
      {502, DeletionStatus::Transient}, {503, DeletionStatus::Transient},
      {400, DeletionStatus::Rejected},  {405, DeletionStatus::Rejected},
      {409, DeletionStatus::Rejected},  {410, DeletionStatus::Rejected},
  };

  for (const Case& testCase : cases)
  {
    FakeSender sender(AnswerAllStored);
    sender.deleteStatus = testCase.status;

    const DeletionResult result = DeleteAtService(sender, MakeSentItem(SENT_TO, ""));

    EXPECT_EQ(testCase.expected, result.status) << "HTTP " << testCase.status;
    EXPECT_EQ(testCase.status, result.httpStatus);
    EXPECT_EQ(std::vector<std::string>{SENT_TO_URL}, sender.deletes) << "HTTP " << testCase.status;
    EXPECT_EQ(0u, sender.invalidations) << "HTTP " << testCase.status;
    EXPECT_NE(std::string::npos, result.message.find("HTTP " + std::to_string(testCase.status)))
        << result.message;
    EXPECT_NE(std::string::npos, result.message.find(SENT_TO_URL)) << result.message;
  }
}


TEST(ServiceDeletionTest, MessageShowsServiceText)
{
  RecordingSender sender(AnswerAllStored);
  sender.deleteStatuses = {400};
  sender.deleteBody = "The SOP Instance UID is invalid.";

  const DeletionResult result = DeleteAtService(sender, MakeSentItem(SENT_TO, ""));

  EXPECT_EQ(DeletionStatus::Rejected, result.status);
  EXPECT_NE(std::string::npos, result.message.find("The SOP Instance UID is invalid."))
      << result.message;
}


TEST(ServiceDeletionTest, RejectedTokenIsRefreshedOnce)
{
  RecordingSender sender(AnswerAllStored);
  sender.deleteStatuses = {401, 204};

  const DeletionResult result = DeleteAtService(sender, MakeSentItem(SENT_TO, ""));

  EXPECT_EQ(DeletionStatus::Deleted, result.status);
  EXPECT_EQ(204, result.httpStatus);
  EXPECT_EQ(1u, sender.invalidations);
  EXPECT_EQ(2u, sender.calls.size());
}


TEST(ServiceDeletionTest, SecondRejectedTokenIsTransient)
{
  RecordingSender sender(AnswerAllStored);
  sender.deleteStatuses = {401};

  const DeletionResult result = DeleteAtService(sender, MakeSentItem(SENT_TO, ""));

  EXPECT_EQ(DeletionStatus::Transient, result.status);
  EXPECT_EQ(401, result.httpStatus);
  EXPECT_EQ(1u, sender.invalidations);
  EXPECT_EQ(2u, sender.calls.size());
}


TEST(ServiceDeletionTest, NetworkErrorIsTransient)
{
  RecordingSender sender(AnswerAllStored);
  sender.deleteFails = true;

  const DeletionResult result = DeleteAtService(sender, MakeSentItem(SENT_TO, ""));

  EXPECT_EQ(DeletionStatus::Transient, result.status);
  EXPECT_EQ(0, result.httpStatus);
  EXPECT_NE(std::string::npos, result.message.find(SENT_TO_URL)) << result.message;
  EXPECT_NE(std::string::npos, result.message.find("connection refused")) << result.message;
  EXPECT_EQ(0u, sender.invalidations);
}


namespace
{
// The DELETE requests of the senders that a DeletionWorker creates in its thread.
struct DeleteLog
{
  std::mutex mutex;
  std::vector<std::string> urls;
  long status = 204;
  std::function<void()> duringDelete;  // runs inside each DELETE, before it returns
};


class LoggingDeleteSender : public IStowSender
{
public:
  explicit LoggingDeleteSender(DeleteLog& log) : log_(log) {}

  HttpResponse Post(const std::string&, const std::string&) override
  {
    return MakeError(500);
  }

  HttpResponse Put(const std::string&, const std::string&) override
  {
    return MakeError(500);
  }

  HttpResponse Delete(const std::string& url) override
  {
    std::function<void()> duringDelete;
    HttpResponse response;
    {
      std::lock_guard<std::mutex> lock(log_.mutex);
      log_.urls.push_back(url);
      response.status = log_.status;
      duringDelete = log_.duringDelete;
    }
    if (duringDelete)
    {
      duringDelete();
    }
    return response;
  }

  void InvalidateToken() override {}

private:
  DeleteLog& log_;
};


class DeletionWorkerTest : public DispatcherConflictTest
{
protected:
  void TearDown() override
  {
    worker_.reset();
    DispatcherConflictTest::TearDown();
  }

  DeletionWorker& StartWorker(IOrthancGateway* orthanc = nullptr)
  {
    worker_ = std::make_unique<DeletionWorker>(
        *outbox_, logger_, settings_.retry,
        [this]()
        { return std::unique_ptr<IStowSender>(std::make_unique<LoggingDeleteSender>(log_)); },
        orthanc);
    worker_->Start();
    return *worker_;
  }

  size_t CountDeletes()
  {
    std::lock_guard<std::mutex> lock(log_.mutex);
    return log_.urls.size();
  }

  // Waits up to timeoutMs for condition, polling every 10 ms.
  bool WaitFor(const std::function<bool()>& condition, int timeoutMs)
  {
    for (int i = 0; i < timeoutMs / 10; i++)
    {
      if (condition())
      {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return condition();
  }

  bool HasItem(const std::string& uid)
  {
    OutboxItem item;
    return outbox_->FindItem(item, uid);
  }

  DeleteLog log_;
  std::unique_ptr<DeletionWorker> worker_;
};
}  // namespace


TEST_F(DeletionWorkerTest, DeletedCopyRemovesItem)
{
  MirrorFirstCopy("30.1");
  MirrorFirstCopy("31.1");
  ASSERT_TRUE(outbox_->RequestDeletion("30.1", NowMs()));

  DeletionWorker& worker = StartWorker();

  ASSERT_TRUE(WaitFor([&] { return worker.GetStatus().done == 1; }, 5000));
  EXPECT_FALSE(HasItem("30.1"));
  EXPECT_TRUE(HasItem("31.1"));
  std::lock_guard<std::mutex> lock(log_.mutex);
  EXPECT_EQ(std::vector<std::string>{GetInstanceUrl(settings_.target, "30.1")}, log_.urls);
}


TEST_F(DeletionWorkerTest, GoneCopyRemovesItem)
{
  log_.status = 404;
  MirrorFirstCopy("30.1");
  ASSERT_TRUE(outbox_->RequestDeletion("30.1", NowMs()));

  DeletionWorker& worker = StartWorker();

  ASSERT_TRUE(WaitFor([&] { return worker.GetStatus().done == 1; }, 5000));
  EXPECT_FALSE(HasItem("30.1"));
}


TEST_F(DeletionWorkerTest, WakeSendsNewRequest)
{
  MirrorFirstCopy("30.1");
  DeletionWorker& worker = StartWorker();
  // The first pass finds nothing, and the worker then waits 5 s unless it is woken.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  ASSERT_TRUE(outbox_->RequestDeletion("30.1", NowMs()));
  worker.Wake();

  EXPECT_TRUE(WaitFor([&] { return worker.GetStatus().done == 1; }, 2000));
  EXPECT_FALSE(HasItem("30.1"));
}


TEST_F(DeletionWorkerTest, RejectedDeletionKeepsItem)
{
  log_.status = 400;
  MirrorFirstCopy("30.1");
  ASSERT_TRUE(outbox_->RequestDeletion("30.1", NowMs()));

  DeletionWorker& worker = StartWorker();

  ASSERT_TRUE(WaitFor([&] { return !worker.GetStatus().lastError.empty(); }, 5000));
  const OutboxItem item = GetItem("30.1");
  EXPECT_EQ(ItemState::Mirrored, item.state);
  EXPECT_NE(std::string::npos, item.message.find("rejected its deletion")) << item.message;
  EXPECT_NE(std::string::npos, item.message.find("HTTP 400")) << item.message;
  EXPECT_EQ(0u, worker.GetStatus().done);
  EXPECT_NE(std::string::npos, worker.GetStatus().lastError.find("HTTP 400"));
}


TEST_F(DeletionWorkerTest, TransientErrorKeepsRequest)
{
  log_.status = 503;
  MirrorFirstCopy("30.1");
  MirrorFirstCopy("31.1");
  ASSERT_TRUE(outbox_->RequestDeletion("30.1", NowMs()));
  ASSERT_TRUE(outbox_->RequestDeletion("31.1", NowMs()));

  DeletionWorker& worker = StartWorker();

  ASSERT_TRUE(WaitFor([&] { return !worker.GetStatus().lastError.empty(); }, 5000));
  worker.Stop();
  EXPECT_TRUE(GetItem("30.1").deleteRequested);
  EXPECT_TRUE(GetItem("31.1").deleteRequested);
  EXPECT_EQ(0u, worker.GetStatus().done);
  EXPECT_NE(std::string::npos, worker.GetStatus().lastError.find("HTTP 503"));
  // The worker waits after the first error instead of trying the next item.
  EXPECT_EQ(1u, CountDeletes());
}


TEST_F(DeletionWorkerTest, OverwrittenInstanceIsSentAgain)
{
  // Orthanc stores the instance again (OverwriteInstances), and the follower queues the new
  // file before Orthanc reports the deletion of the old one.
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  ASSERT_TRUE(outbox_->RequestDeletion("30.1", NowMs()));

  FakeOrthanc orthanc;
  Json::Value instance;
  instance["MainDicomTags"]["SOPInstanceUID"] = "30.1";
  instance["ParentSeries"] = "series";
  instance["FileSize"] = Json::UInt64(2048);
  instance["FileUuid"] = "attachment-2";
  orthanc.jsonAnswers["/instances/30.1"] = instance;
  orthanc.jsonAnswers["/series/series"]["ParentStudy"] = "study";
  orthanc.jsonAnswers["/series/series"]["MainDicomTags"]["SeriesInstanceUID"] = SERIES_UID;
  orthanc.jsonAnswers["/studies/study"]["MainDicomTags"]["StudyInstanceUID"] = STUDY_UID;

  DeletionWorker& worker = StartWorker(&orthanc);

  ASSERT_TRUE(WaitFor([&] { return worker.GetStatus().done == 1; }, 5000));
  worker.Stop();
  const OutboxItem item = GetItem("30.1");
  EXPECT_EQ(ItemState::Pending, item.state);
  EXPECT_FALSE(item.deleteRequested);
  EXPECT_FALSE(item.contentChanged);
  EXPECT_EQ(0, item.createdSequence);
  EXPECT_EQ("attachment-2", item.instance.fileUuid);
  EXPECT_EQ(2048u, item.instance.size);
  EXPECT_EQ(1u, CountDeletes());
}


TEST_F(DeletionWorkerTest, RequestedDeletionHoldsDispatch)
{
  MirrorFirstCopy("30.1");
  StoreOtherContent("30.1");
  ASSERT_TRUE(outbox_->RequestDeletion("30.1", NowMs()));

  // The old copy must be deleted before the new file is sent.
  FakeSender sender(AnswerAllStored);
  EXPECT_FALSE(GetDispatcher().ProcessOneBatch(sender));
  EXPECT_EQ(ItemState::Pending, GetItem("30.1").state);
}


// Adaptive concurrency after throttling, and bodies streamed from the gateway's buffers.

namespace
{
using TrackedBuffer = AzureDicom::Testing::CountedBuffer;


// Serves /instances/{id}/file through ReadBuffer() alone, with the content "DICM:<id>", and
// records where each file's bytes are. GetBinary() fails the test, because the dispatcher
// must not copy the files.
class BufferGateway : public IOrthancGateway
{
public:
  bool GetJson(Json::Value&, const std::string&) override
  {
    return false;
  }

  bool GetBinary(std::string&, const std::string& uri) override
  {
    ADD_FAILURE() << "GetBinary(" << uri << ") was called instead of ReadBuffer()";
    return false;
  }

  std::unique_ptr<IBuffer> ReadBuffer(const std::string& uri) override
  {
    uris.push_back(uri);
    const std::string id = GetInstanceIdOfUri(uri);
    if (deleted.count(id) > 0)
    {
      return nullptr;
    }
    if (failing.count(id) > 0)
    {
      throw Exception(ErrorCode::InternalError, "GET " + uri + " failed: disk error");
    }

    auto buffer = std::make_unique<TrackedBuffer>(MakeFakeFile(id, sizes), liveBuffers);
    addresses[id].push_back(buffer->GetData());
    return buffer;
  }

  std::vector<std::string> uris;
  std::map<std::string, std::vector<const char*>> addresses;  // by Orthanc ID, one per read
  std::set<std::string> deleted;
  std::set<std::string> failing;  // whose read throws
  int liveBuffers = 0;
  const std::map<std::string, uint64_t>* sizes = nullptr;  // file sizes by Orthanc ID
};


// One call of IStowSender::Send() that read its whole body, as the sender saw it.
struct SentBody
{
  std::vector<BodySegment> segments;
  std::vector<const char*> loadedAddresses;  // of the deferred segments' bytes, in order
  std::string joined;
  std::string contentType;
  bool upsert = false;
  int liveBuffers = 0;  // the maximum of the gateway's live buffers during the call
};


// Records each call of Send() and returns the handler's response. Post() and Put() fail the
// test, because the dispatcher must not join a body in pieces.
class StreamingSender : public IStowSender
{
public:
  using Handler = std::function<HttpResponse(const std::vector<std::string>& uids)>;

  StreamingSender(Handler handler, const int* liveBuffers = nullptr)
      : handler_(std::move(handler)), liveBuffers_(liveBuffers)
  {
  }

  HttpResponse Post(const std::string&, const std::string&) override
  {
    ADD_FAILURE() << "Post() was called instead of Send()";
    return MakeError(500);
  }

  HttpResponse Put(const std::string&, const std::string&) override
  {
    ADD_FAILURE() << "Put() was called instead of Send()";
    return MakeError(500);
  }

  // Reads the body piece by piece as libcurl does, loading each deferred piece when it comes
  // and releasing it after. A piece that fails to load aborts the call, as the read callback
  // aborts the transfer.
  HttpResponse Send(const RequestBody& body, const std::string& contentType, bool upsert) override
  {
    SentBody sent;
    sent.segments = body.GetSegments();
    sent.contentType = contentType;
    sent.upsert = upsert;
    sent.liveBuffers = CountLiveBuffers();
    for (const BodySegment& segment : sent.segments)
    {
      if (segment.deferred == nullptr)
      {
        sent.joined.append(segment.data, segment.size);
        continue;
      }

      std::unique_ptr<IBuffer> loaded = segment.deferred->Load();
      if (!loaded || loaded->GetSize() != segment.size)
      {
        aborted++;
        throw Exception(ErrorCode::NetworkError, "POST https://dicom.example/v2/studies: "
                                                 "Operation was aborted by an application callback");
      }
      sent.liveBuffers = std::max(sent.liveBuffers, CountLiveBuffers());
      sent.loadedAddresses.push_back(loaded->GetData());
      sent.joined.append(loaded->GetData(), loaded->GetSize());
    }

    bodies.push_back(sent);
    return handler_(GetPartUids(sent.joined));
  }

  HttpResponse Delete(const std::string& url) override
  {
    ADD_FAILURE() << "unexpected DELETE " << url;
    return MakeError(500);
  }

  void InvalidateToken() override {}

  std::vector<SentBody> bodies;
  unsigned int aborted = 0;  // calls that stopped because a piece could not be read

private:
  int CountLiveBuffers() const
  {
    return liveBuffers_ != nullptr ? *liveBuffers_ : 0;
  }

  Handler handler_;
  const int* liveBuffers_;
};


// Returns the service's response with this status. A 200 confirms every instance, 0 throws
// NetworkError, and any other status is an error response.
HttpResponse AnswerWithStatus(long status, const std::vector<std::string>& uids)
{
  if (status == 0)
  {
    throw Exception(ErrorCode::NetworkError, "POST https://dicom.example/v2/studies: reset");
  }
  return status == 200 ? MakeAnswer(200, uids) : MakeError(status, "1");
}


// Sends one instance per request, so that each ProcessOneBatch() call is one request with the
// status that the test chooses.
class DispatcherThrottleTest : public DispatcherTest
{
protected:
  void SetUp() override
  {
    DispatcherTest::SetUp();
    settings_.maxInstancesPerRequest = 1;
  }

  // Creates the dispatcher with this many workers and a sender factory for Start().
  Dispatcher& MakeDispatcher(unsigned int workers)
  {
    settings_.workers = workers;
    dispatcher_ = std::make_unique<Dispatcher>(
        *outbox_, orthanc_, logger_, settings_,
        []
        {
          return std::unique_ptr<IStowSender>(std::make_unique<StreamingSender>(
              [](const std::vector<std::string>& uids) { return MakeAnswer(200, uids); }));
        });
    return *dispatcher_;
  }

  // Sends one request that gets a response with this status, and returns the active workers.
  unsigned int SendAnswered(long status)
  {
    // Ends the wait of an earlier throttling, as its expiry would: throttling within one wait
    // halves the workers only once.
    dispatcher_->Resume();
    QueueInstances({"70." + std::to_string(++queued_)});
    StreamingSender sender([status](const std::vector<std::string>& uids)
                           { return AnswerWithStatus(status, uids); });
    EXPECT_TRUE(dispatcher_->ProcessOneBatch(sender)) << "status " << status;
    EXPECT_EQ(1u, sender.bodies.size()) << "status " << status;
    return dispatcher_->GetStatus().activeWorkers;
  }

  // Sends count accepted requests and returns the active workers.
  unsigned int SendAccepted(unsigned int count)
  {
    for (unsigned int i = 0; i < count; i++)
    {
      SendAnswered(200);
    }
    return dispatcher_->GetStatus().activeWorkers;
  }

  unsigned int queued_ = 0;
};
}  // namespace


TEST_F(DispatcherThrottleTest, StartsWithAllWorkers)
{
  EXPECT_EQ(8u, MakeDispatcher(8).GetStatus().activeWorkers);
  EXPECT_EQ(8u, SendAccepted(3));
}


TEST_F(DispatcherThrottleTest, ThrottlingHalvesWorkers)
{
  MakeDispatcher(8);

  EXPECT_EQ(4u, SendAnswered(429));
  EXPECT_EQ(2u, SendAnswered(503));
  EXPECT_EQ(1u, SendAnswered(429));
  EXPECT_EQ(1u, SendAnswered(503));
  EXPECT_EQ(1u, SendAnswered(429));
  EXPECT_EQ(429, dispatcher_->GetStatus().lastErrorStatus);
}


TEST_F(DispatcherThrottleTest, OddCountHalvesDown)
{
  MakeDispatcher(5);

  EXPECT_EQ(2u, SendAnswered(503));
  EXPECT_EQ(1u, SendAnswered(503));
}


TEST_F(DispatcherThrottleTest, OneWorkerStaysOne)
{
  MakeDispatcher(1);

  EXPECT_EQ(1u, SendAnswered(429));
  EXPECT_EQ(1u, SendAccepted(20));
}


TEST_F(DispatcherThrottleTest, OtherErrorsKeepWorkers)
{
  MakeDispatcher(4);

  for (long status : {500L, 502L, 504L, 0L, 404L, 403L})
  {
    EXPECT_EQ(4u, SendAnswered(status)) << "status " << status;
  }
  EXPECT_EQ(403, dispatcher_->GetStatus().lastErrorStatus);
}


TEST_F(DispatcherThrottleTest, TenAcceptedAddOneWorker)
{
  MakeDispatcher(4);
  ASSERT_EQ(2u, SendAnswered(429));

  EXPECT_EQ(2u, SendAccepted(9));
  EXPECT_EQ(3u, SendAccepted(1));
  EXPECT_EQ(3u, SendAccepted(9));
  EXPECT_EQ(4u, SendAccepted(1));

  // Never more than Workers.
  EXPECT_EQ(4u, SendAccepted(25));
}


TEST_F(DispatcherThrottleTest, GrowsBackFromOne)
{
  MakeDispatcher(8);
  SendAnswered(429);
  SendAnswered(429);
  ASSERT_EQ(1u, SendAnswered(429));

  EXPECT_EQ(2u, SendAccepted(10));
  EXPECT_EQ(4u, SendAccepted(20));
  EXPECT_EQ(8u, SendAccepted(40));
  EXPECT_EQ(8u, SendAccepted(10));
}


TEST_F(DispatcherThrottleTest, ThrottlingRestartsCount)
{
  MakeDispatcher(4);
  ASSERT_EQ(2u, SendAnswered(429));
  ASSERT_EQ(3u, SendAccepted(10));

  // Accepted requests before a throttling response do not count towards the next worker.
  EXPECT_EQ(3u, SendAccepted(9));
  EXPECT_EQ(1u, SendAnswered(503));
  EXPECT_EQ(1u, SendAccepted(9));
  EXPECT_EQ(2u, SendAccepted(1));
}


TEST_F(DispatcherThrottleTest, SuccessesAtFullCountDoNotCarry)
{
  MakeDispatcher(4);
  ASSERT_EQ(4u, SendAccepted(15));

  ASSERT_EQ(2u, SendAnswered(429));
  EXPECT_EQ(2u, SendAccepted(9));
  EXPECT_EQ(3u, SendAccepted(1));
}


TEST_F(DispatcherThrottleTest, StartResetsWorkers)
{
  Dispatcher& dispatcher = MakeDispatcher(4);
  ASSERT_EQ(2u, SendAnswered(429));
  ASSERT_EQ(1u, SendAnswered(503));

  // Paused, so that the started workers send nothing.
  dispatcher.Pause();
  dispatcher.Start();
  EXPECT_EQ(4u, dispatcher.GetStatus().activeWorkers);
  dispatcher.Stop();

  // A later throttling halves the restored count again, and a new Start() restores it again.
  EXPECT_EQ(2u, SendAnswered(429));
  dispatcher.Start();
  EXPECT_EQ(4u, dispatcher.GetStatus().activeWorkers);
  dispatcher.Stop();
}


// Streams the body of each batch from the gateway's buffers.
class DispatcherStreamTest : public DispatcherTest
{
protected:
  // Returns how many segments of the body are exactly the bytes at data.
  static size_t CountSegmentsAt(const SentBody& body, const char* data, size_t size)
  {
    return static_cast<size_t>(std::count_if(
        body.segments.begin(), body.segments.end(), [&](const BodySegment& segment)
        { return segment.data == data && segment.size == size; }));
  }

  Dispatcher& MakeDispatcher()
  {
    gateway_.sizes = &fileSizes_;
    dispatcher_ = std::make_unique<Dispatcher>(*outbox_, gateway_, logger_, settings_,
                                               [] { return std::unique_ptr<IStowSender>(); });
    return *dispatcher_;
  }


  BufferGateway gateway_;
};


TEST_F(DispatcherStreamTest, BatchSentFromGatewayBuffers)
{
  QueueInstances({"80.1", "80.2", "80.3"});
  StreamingSender sender([](const std::vector<std::string>& uids) { return MakeAnswer(200, uids); },
                         &gateway_.liveBuffers);

  ASSERT_TRUE(MakeDispatcher().ProcessOneBatch(sender));

  ASSERT_EQ(1u, sender.bodies.size());
  const SentBody& body = sender.bodies[0];
  EXPECT_FALSE(body.upsert);
  EXPECT_EQ(0u, body.contentType.find("multipart/related; type=\"application/dicom\"; boundary="));

  // The parts are the gateway's buffers, not copies of them: the first one read before the
  // request, the others when the upload reaches them.
  ASSERT_EQ(3u, gateway_.uris.size());
  const std::vector<std::string> ids = {"80.1", "80.2", "80.3"};
  for (const std::string& id : ids)
  {
    ASSERT_EQ(1u, gateway_.addresses[id].size()) << id;
    EXPECT_EQ(ItemState::Mirrored, GetItem(id).state) << id;
  }
  EXPECT_EQ(1u, CountSegmentsAt(body, gateway_.addresses["80.1"][0], GetFakeFileSize("80.1")));
  ASSERT_EQ(2u, body.loadedAddresses.size());
  EXPECT_EQ(gateway_.addresses["80.2"][0], body.loadedAddresses[0]);
  EXPECT_EQ(gateway_.addresses["80.3"][0], body.loadedAddresses[1]);

  const std::vector<std::string> expected = {"80.1", "80.2", "80.3"};
  EXPECT_EQ(expected, GetPartUids(body.joined));

  // Each later file is read when the upload reaches it and released after its part, so the
  // first file and one other are in memory at a time.
  EXPECT_EQ(2, body.liveBuffers);
  EXPECT_EQ(0, gateway_.liveBuffers);
}


TEST_F(DispatcherStreamTest, BodyMatchesMultipartLayout)
{
  QueueInstances({"81.1", "81.2"});
  StreamingSender sender([](const std::vector<std::string>& uids)
                         { return MakeAnswer(200, uids); });

  ASSERT_TRUE(MakeDispatcher().ProcessOneBatch(sender));
  ASSERT_EQ(1u, sender.bodies.size());

  const SentBody& body = sender.bodies[0];
  const std::string boundary = body.contentType.substr(body.contentType.find("boundary=") + 9);
  const std::string part = "Content-Type: application/dicom\r\n\r\n";
  EXPECT_EQ("--" + boundary + "\r\n" + part + FAKE_PREAMBLE + "DICM:81.1\r\n--" + boundary +
                "\r\n" + part + FAKE_PREAMBLE + "DICM:81.2\r\n--" + boundary + "--\r\n",
            body.joined);
  EXPECT_EQ(body.joined.size(), GetDispatcher().GetStatus().bytes);
}


TEST_F(DispatcherStreamTest, DeletedFileLeftOutOfBody)
{
  QueueInstances({"82.1", "82.2", "82.3"});
  gateway_.deleted.insert("82.2");
  StreamingSender sender([](const std::vector<std::string>& uids)
                         { return MakeAnswer(200, uids); });

  ASSERT_TRUE(MakeDispatcher().ProcessOneBatch(sender));

  // The upload stops at the deleted file, and the others are sent again without it.
  EXPECT_EQ(1u, sender.aborted);
  ASSERT_EQ(1u, sender.bodies.size());
  const std::vector<std::string> expected = {"82.1", "82.3"};
  EXPECT_EQ(expected, GetPartUids(sender.bodies[0].joined));
  EXPECT_EQ(ItemState::Skipped, GetItem("82.2").state);
  EXPECT_EQ(ItemState::Mirrored, GetItem("82.1").state);
  EXPECT_EQ(ItemState::Mirrored, GetItem("82.3").state);
}


TEST_F(DispatcherStreamTest, TooLargeReadsFilesAgain)
{
  QueueInstances({"83.1", "83.2", "83.3", "83.4"});
  StreamingSender sender([](const std::vector<std::string>& uids)
                         { return uids.size() > 2 ? MakeError(413) : MakeAnswer(200, uids); },
                         &gateway_.liveBuffers);

  ASSERT_TRUE(MakeDispatcher().ProcessOneBatch(sender));

  ASSERT_EQ(3u, sender.bodies.size());
  EXPECT_EQ(4u, GetPartUids(sender.bodies[0].joined).size());
  const std::vector<std::string> firstHalf = {"83.1", "83.2"};
  const std::vector<std::string> secondHalf = {"83.3", "83.4"};
  EXPECT_EQ(firstHalf, GetPartUids(sender.bodies[1].joined));
  EXPECT_EQ(secondHalf, GetPartUids(sender.bodies[2].joined));

  // Each half reads its files again: the first before the request, the second during it.
  EXPECT_EQ(8u, gateway_.uris.size());
  EXPECT_EQ(2, sender.bodies[1].liveBuffers);
  EXPECT_EQ(2, sender.bodies[2].liveBuffers);
  ASSERT_EQ(2u, gateway_.addresses["83.4"].size());
  ASSERT_EQ(1u, sender.bodies[2].loadedAddresses.size());
  EXPECT_EQ(gateway_.addresses["83.4"][1], sender.bodies[2].loadedAddresses[0]);
  EXPECT_EQ(0, gateway_.liveBuffers);

  for (const char* id : {"83.1", "83.2", "83.3", "83.4"})
  {
    EXPECT_EQ(ItemState::Mirrored, GetItem(id).state) << id;
  }
}


TEST_F(DispatcherThrottleTest, SameWaitHalvesOnce)
{
  MakeDispatcher(8);
  EXPECT_EQ(4u, SendAnswered(429));

  // A second worker throttled before the wait ends.
  QueueInstances({"71.1"});
  StreamingSender sender([](const std::vector<std::string>& uids)
                         { return AnswerWithStatus(429, uids); });
  EXPECT_TRUE(dispatcher_->ProcessOneBatch(sender));

  EXPECT_EQ(4u, dispatcher_->GetStatus().activeWorkers);
}


TEST_F(DispatcherStreamTest, ResizedFileSentFromMemory)
{
  QueueInstances({"84.1", "84.2"});
  fileSizes_["84.2"] = 300;  // Orthanc now returns another size than the outbox recorded
  StreamingSender sender([](const std::vector<std::string>& uids)
                         { return MakeAnswer(200, uids); });

  ASSERT_TRUE(MakeDispatcher().ProcessOneBatch(sender));

  EXPECT_EQ(1u, sender.aborted);
  ASSERT_EQ(2u, sender.bodies.size());
  EXPECT_EQ(std::vector<std::string>{"84.1"}, GetPartUids(sender.bodies[0].joined));
  EXPECT_EQ(std::vector<std::string>{"84.2"}, GetPartUids(sender.bodies[1].joined));
  EXPECT_TRUE(sender.bodies[1].loadedAddresses.empty());
  EXPECT_EQ(ItemState::Mirrored, GetItem("84.1").state);
  EXPECT_EQ(ItemState::Mirrored, GetItem("84.2").state);
  EXPECT_TRUE(logger_.Contains("changed size in Orthanc"));
}


TEST_F(DispatcherStreamTest, FailedReadReleasesBatch)
{
  QueueInstances({"85.1", "85.2"});
  gateway_.failing.insert("85.2");
  StreamingSender sender([](const std::vector<std::string>& uids)
                         { return MakeAnswer(200, uids); });

  ASSERT_TRUE(MakeDispatcher().ProcessOneBatch(sender));

  EXPECT_EQ(1u, sender.aborted);
  EXPECT_TRUE(sender.bodies.empty());
  for (const char* id : {"85.1", "85.2"})
  {
    const OutboxItem item = GetItem(id);
    EXPECT_EQ(ItemState::Pending, item.state) << id;
    EXPECT_EQ(0u, item.attempts) << id;
  }
  EXPECT_TRUE(logger_.Contains("disk error"));
  EXPECT_EQ(0u, GetDispatcher().GetStatus().requests);
}


TEST_F(DispatcherStreamTest, AllDeletedSendsNoRequest)
{
  QueueInstances({"86.1", "86.2"});
  gateway_.deleted.insert("86.1");
  gateway_.deleted.insert("86.2");
  StreamingSender sender([](const std::vector<std::string>& uids)
                         { return MakeAnswer(200, uids); });

  MakeDispatcher().ProcessOneBatch(sender);

  EXPECT_EQ(0u, sender.aborted);
  EXPECT_TRUE(sender.bodies.empty());
  EXPECT_EQ(ItemState::Skipped, GetItem("86.1").state);
  EXPECT_EQ(ItemState::Skipped, GetItem("86.2").state);
}


TEST_F(DispatcherTest, WorkersWaitForBurstEnd)
{
  std::atomic<int> requests{0};
  dispatcher_ = std::make_unique<Dispatcher>(*outbox_, orthanc_, logger_, settings_, [&]() {
    return std::make_unique<FakeSender>([&](const std::vector<std::string>& uids) {
      requests++;
      return MakeAnswer(200, uids);
    });
  });
  dispatcher_->Start();

  // A burst of 500 stores per second for 0.6 s: the workers wait until it ends.
  for (unsigned int i = 0; i < 2 * BURST_STORES_PER_SECOND; i++)
  {
    dispatcher_->NoteIngestion();
  }
  QueueInstances({"18.1"});
  for (int i = 0; i < 30; i++)
  {
    for (int j = 0; j < 10; j++)
    {
      dispatcher_->NoteIngestion();
    }
    dispatcher_->Wake();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(0, requests.load());
  EXPECT_EQ(ItemState::Pending, GetItem("18.1").state);

  for (int i = 0; i < 150 && GetItem("18.1").state != ItemState::Mirrored; i++)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  dispatcher_->Stop();
  EXPECT_EQ(ItemState::Mirrored, GetItem("18.1").state);
  EXPECT_EQ(1, requests.load());
}


TEST_F(DispatcherTest, WorkersYieldWhileIngesting)
{
  struct Scheduling
  {
    int policy;
    int niceness;
  };
  std::mutex mutex;
  std::vector<Scheduling> seen;  // of the worker thread during each request
  dispatcher_ = std::make_unique<Dispatcher>(*outbox_, orthanc_, logger_, settings_, [&]() {
    return std::make_unique<FakeSender>([&](const std::vector<std::string>& uids) {
      std::lock_guard<std::mutex> lock(mutex);
      seen.push_back({sched_getscheduler(static_cast<pid_t>(syscall(SYS_gettid))),
                      GetCurrentThreadNiceness()});
      return MakeAnswer(200, uids);
    });
  });
  const int initial = GetCurrentThreadNiceness();
  const bool canRestore = CanRestoreCurrentThreadPriority();
  dispatcher_->Start();

  dispatcher_->NoteIngestion();
  EXPECT_TRUE(dispatcher_->GetIngestionMonitor().IsIngesting(NowMs()));
  QueueInstances({"19.1"});
  dispatcher_->Wake();
  for (int i = 0; i < 200 && GetItem("19.1").state != ItemState::Mirrored; i++)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  // Without ingestion for longer than its window, the workers return to their first priority
  // where the system allows it (CAP_SYS_NICE, as root), and keep nice 10 otherwise.
  std::this_thread::sleep_for(std::chrono::milliseconds(INGESTION_WINDOW_MS + 100));
  EXPECT_FALSE(dispatcher_->GetIngestionMonitor().IsIngesting(NowMs()));
  QueueInstances({"19.2"});
  dispatcher_->Wake();
  for (int i = 0; i < 200 && GetItem("19.2").state != ItemState::Mirrored; i++)
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  dispatcher_->Stop();

  std::lock_guard<std::mutex> lock(mutex);
  ASSERT_EQ(2u, seen.size());
  if (canRestore)
  {
    EXPECT_EQ(SCHED_IDLE, seen[0].policy);
    EXPECT_EQ(initial, seen[0].niceness);
    EXPECT_EQ(SCHED_OTHER, seen[1].policy);
    EXPECT_EQ(initial, seen[1].niceness);
  }
  else
  {
    EXPECT_EQ(SCHED_OTHER, seen[0].policy);
    EXPECT_EQ(std::max(initial, MIRROR_THREAD_NICENESS), seen[0].niceness);
    EXPECT_EQ(SCHED_OTHER, seen[1].policy);
    EXPECT_EQ(seen[0].niceness, seen[1].niceness);
    EXPECT_TRUE(logger_.Contains("needs CAP_SYS_NICE"));
  }
}
