#include "Azure/Credential.h"
#include "Common/Exception.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace AzureDicom;

namespace
{
const int64_t START_MS = 1700000000000;
const int64_t HOUR_MS = 3600 * 1000;
const unsigned int MARGIN_SECONDS = 300;
const int64_t MARGIN_MS = MARGIN_SECONDS * 1000;
const int THREAD_COUNT = 8;


// Issues "token-1", "token-2", ... that expire lifetimeMs after the simulated clock, counting
// its calls. It can be set to fail, and to take time so that threads pile up behind it.
class FakeCredential : public ICredential
{
 public:
  struct State
  {
    std::atomic<int> calls{0};
    std::atomic<int> concurrent{0};
    std::atomic<int> maxConcurrent{0};
    std::atomic<int64_t> clockMs{START_MS};
    std::atomic<int64_t> lifetimeMs{HOUR_MS};
    std::atomic<int> delayMs{0};
    std::atomic<bool> fail{false};
  };

  explicit FakeCredential(std::shared_ptr<State> state) : state_(std::move(state)) {}

  AccessToken RequestToken() override
  {
    const int running = ++state_->concurrent;
    int seen = state_->maxConcurrent;
    while (running > seen && !state_->maxConcurrent.compare_exchange_weak(seen, running))
    {
    }

    const int call = ++state_->calls;
    if (state_->delayMs > 0)
    {
      std::this_thread::sleep_for(std::chrono::milliseconds(state_->delayMs.load()));
    }

    state_->concurrent--;
    if (state_->fail)
    {
      throw Exception(ErrorCode::Unauthorized,
                      "Fake credential: the token request failed with HTTP 401 (call " +
                          std::to_string(call) + ")");
    }

    AccessToken token;
    token.value = "token-" + std::to_string(call);
    token.expiresOn = state_->clockMs + state_->lifetimeMs;
    return token;
  }

  std::string GetType() const override
  {
    return "Fake";
  }

  std::string GetPrincipal() const override
  {
    return "fake-client";
  }

 private:
  std::shared_ptr<State> state_;
};


class TokenCacheTest : public ::testing::Test
{
 protected:
  TokenCacheTest()
      : state_(std::make_shared<FakeCredential::State>()),
        cache_(std::make_unique<FakeCredential>(state_), MARGIN_SECONDS)
  {
  }

  // Starts THREAD_COUNT threads that call GetToken at the same moment, and waits for them.
  // Each thread's token, or the message of its exception, is returned.
  std::vector<std::string> GetTokenFromThreads()
  {
    std::vector<std::string> results(THREAD_COUNT);
    std::mutex mutex;
    std::condition_variable startSignal;
    bool started = false;

    std::vector<std::thread> threads;
    for (int i = 0; i < THREAD_COUNT; i++)
    {
      threads.emplace_back(
          [&, i]
          {
            {
              std::unique_lock<std::mutex> lock(mutex);
              startSignal.wait(lock, [&] { return started; });
            }

            try
            {
              results[i] = cache_.GetToken(START_MS);
            }
            catch (const Exception& e)
            {
              results[i] = std::string("error: ") + e.what();
            }
          });
    }

    {
      std::lock_guard<std::mutex> lock(mutex);
      started = true;
    }
    startSignal.notify_all();

    for (std::thread& thread : threads)
    {
      thread.join();
    }

    return results;
  }

  std::shared_ptr<FakeCredential::State> state_;
  TokenCache cache_;
};
}  // namespace


TEST_F(TokenCacheTest, CachesToken)
{
  EXPECT_EQ("token-1", cache_.GetToken(START_MS));
  EXPECT_EQ("token-1", cache_.GetToken(START_MS + 1000));
  EXPECT_EQ(1, state_->calls);
  EXPECT_EQ(START_MS + HOUR_MS, cache_.GetExpiresOn());
  EXPECT_EQ("", cache_.GetLastError());
}


TEST_F(TokenCacheTest, RefreshesInsideMargin)
{
  cache_.GetToken(START_MS);

  EXPECT_EQ("token-1", cache_.GetToken(START_MS + HOUR_MS - MARGIN_MS - 1));
  EXPECT_EQ(1, state_->calls);

  state_->clockMs = START_MS + HOUR_MS - MARGIN_MS;
  EXPECT_EQ("token-2", cache_.GetToken(START_MS + HOUR_MS - MARGIN_MS));
  EXPECT_EQ(2, state_->calls);
  EXPECT_EQ(START_MS + 2 * HOUR_MS - MARGIN_MS, cache_.GetExpiresOn());
}


TEST_F(TokenCacheTest, RefreshesAfterExpiry)
{
  cache_.GetToken(START_MS);

  state_->clockMs = START_MS + 2 * HOUR_MS;
  EXPECT_EQ("token-2", cache_.GetToken(START_MS + 2 * HOUR_MS));
  EXPECT_EQ(2, state_->calls);
}


TEST_F(TokenCacheTest, ShortLifetimeHalfMargin)
{
  // 120 s is less than twice the 300 s margin: the token is used for 60 s.
  const int64_t lifetimeMs = 120 * 1000;
  state_->lifetimeMs = lifetimeMs;
  cache_.GetToken(START_MS);

  EXPECT_EQ("token-1", cache_.GetToken(START_MS + lifetimeMs / 2 - 1));
  EXPECT_EQ(1, state_->calls);
  EXPECT_EQ("token-2", cache_.GetToken(START_MS + lifetimeMs / 2));
  EXPECT_EQ(2, state_->calls);
}


TEST_F(TokenCacheTest, LifetimeAtTwiceMarginFullMargin)
{
  state_->lifetimeMs = 2 * MARGIN_MS;
  cache_.GetToken(START_MS);

  EXPECT_EQ("token-1", cache_.GetToken(START_MS + MARGIN_MS - 1));
  EXPECT_EQ("token-2", cache_.GetToken(START_MS + MARGIN_MS));
}


TEST_F(TokenCacheTest, InvalidateForcesRefresh)
{
  cache_.GetToken(START_MS);
  cache_.Invalidate();

  EXPECT_EQ(0, cache_.GetExpiresOn());
  EXPECT_EQ("token-2", cache_.GetToken(START_MS + 1000));
  EXPECT_EQ(2, state_->calls);
}


TEST_F(TokenCacheTest, InvalidateRejectedTokenOnly)
{
  const std::string first = cache_.GetToken(START_MS);
  cache_.Invalidate(first);
  const std::string second = cache_.GetToken(START_MS);

  // A second worker reports the same rejected token after the refresh: the new one stays.
  cache_.Invalidate(first);

  EXPECT_EQ("token-2", second);
  EXPECT_EQ("token-2", cache_.GetToken(START_MS));
  EXPECT_EQ(2, state_->calls);
}


TEST_F(TokenCacheTest, OneRefreshForEightThreads)
{
  state_->delayMs = 200;

  const std::vector<std::string> results = GetTokenFromThreads();

  EXPECT_EQ(1, state_->calls);
  EXPECT_EQ(1, state_->maxConcurrent);
  for (const std::string& result : results)
  {
    EXPECT_EQ("token-1", result);
  }
}


TEST_F(TokenCacheTest, FailureSharedByWaiters)
{
  state_->delayMs = 200;
  state_->fail = true;

  const std::vector<std::string> results = GetTokenFromThreads();

  EXPECT_EQ(1, state_->calls);
  for (const std::string& result : results)
  {
    EXPECT_EQ("error: Fake credential: the token request failed with HTTP 401 (call 1)", result);
  }
}


TEST_F(TokenCacheTest, ErrorStoredAndRethrown)
{
  state_->fail = true;

  try
  {
    cache_.GetToken(START_MS);
    FAIL() << "expected an exception";
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
    EXPECT_EQ("Fake credential: the token request failed with HTTP 401 (call 1)",
              std::string(e.what()));
  }

  EXPECT_EQ("Fake credential: the token request failed with HTTP 401 (call 1)",
            cache_.GetLastError());
  EXPECT_EQ(0, cache_.GetExpiresOn());
}


TEST_F(TokenCacheTest, RetriesAfterFailure)
{
  state_->fail = true;
  EXPECT_THROW(cache_.GetToken(START_MS), Exception);
  EXPECT_THROW(cache_.GetToken(START_MS), Exception);
  EXPECT_EQ(2, state_->calls);

  state_->fail = false;
  EXPECT_EQ("token-3", cache_.GetToken(START_MS));
  EXPECT_EQ("", cache_.GetLastError());
}


TEST_F(TokenCacheTest, RefreshFailureInsideMarginThrows)
{
  cache_.GetToken(START_MS);
  state_->fail = true;

  EXPECT_THROW(cache_.GetToken(START_MS + HOUR_MS - MARGIN_MS), Exception);
  EXPECT_NE("", cache_.GetLastError());
  EXPECT_EQ(START_MS + HOUR_MS, cache_.GetExpiresOn());
}


TEST_F(TokenCacheTest, ExpiredTokenRejected)
{
  state_->lifetimeMs = -1000;

  try
  {
    cache_.GetToken(START_MS);
    FAIL() << "expected an exception";
  }
  catch (const Exception& e)
  {
    EXPECT_EQ(ErrorCode::Unauthorized, e.GetCode());
    EXPECT_NE(std::string::npos, std::string(e.what()).find("Fake credential")) << e.what();
    EXPECT_NE(std::string::npos, std::string(e.what()).find("expired 1 s ago")) << e.what();
  }

  EXPECT_NE("", cache_.GetLastError());
}


TEST_F(TokenCacheTest, NullCredentialRejected)
{
  EXPECT_THROW(TokenCache(std::unique_ptr<ICredential>()), Exception);
}


TEST_F(TokenCacheTest, CredentialAccessible)
{
  EXPECT_EQ("Fake", cache_.GetCredential().GetType());
  EXPECT_EQ("fake-client", cache_.GetCredential().GetPrincipal());
}
