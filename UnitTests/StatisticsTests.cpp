#include "Sync/RequestStatistics.h"
#include "Sync/StatusHistory.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

using namespace AzureDicom;

namespace
{
// An arbitrary fixed time (2026-12-03T10:00:00Z), so that the tests do not depend on the clock.
const int64_t T0 = 1796292000000;
const int64_t SECOND_MS = 1000;
const int64_t HOUR_MS = 3600 * SECOND_MS;


StatusSample MakeSample(int64_t timeMs, uint64_t sentInstances = 0)
{
  StatusSample sample;
  sample.timeMs = timeMs;
  sample.sentInstances = sentInstances;
  sample.sentBytes = sentInstances * 1000;
  return sample;
}
}  // namespace


TEST(RequestStatisticsTest, NoRequestsGivesZeros)
{
  RequestStatistics statistics;
  const RequestSummary summary = statistics.Summarize(T0, 300);

  EXPECT_EQ(300u, summary.windowSeconds);
  EXPECT_EQ(0u, summary.requests);
  EXPECT_EQ(0, summary.requestsPerSecond);
  EXPECT_EQ(0, summary.p95LatencyMs);
  EXPECT_EQ(0u, summary.errors);
  EXPECT_EQ(0, summary.errorRate);
  EXPECT_TRUE(summary.errorsByStatus.empty());
}


TEST(RequestStatisticsTest, RateIsRequestsPerWindowSecond)
{
  RequestStatistics statistics;
  for (int i = 0; i < 30; i++)
  {
    statistics.Record(T0 + i * SECOND_MS, 200, 10);
  }

  const RequestSummary summary = statistics.Summarize(T0 + 30 * SECOND_MS, 300);

  EXPECT_EQ(30u, summary.requests);
  EXPECT_DOUBLE_EQ(0.1, summary.requestsPerSecond);
  EXPECT_EQ(0u, summary.errors);
  EXPECT_EQ(0, summary.errorRate);
}


TEST(RequestStatisticsTest, P95IsNearestRank)
{
  // For n latencies sorted in ascending order, the nearest rank is ceil(0.95 * n).
  const std::vector<std::pair<unsigned int, double>> cases = {
      {1, 1}, {2, 2}, {10, 10}, {19, 19}, {20, 19}, {21, 20}, {40, 38}, {100, 95}, {101, 96}};

  for (const auto& entry : cases)
  {
    SCOPED_TRACE("n = " + std::to_string(entry.first));
    std::vector<double> latencies;
    for (unsigned int i = 1; i <= entry.first; i++)
    {
      latencies.push_back(i);
    }
    std::shuffle(latencies.begin(), latencies.end(), std::mt19937(entry.first));

    RequestStatistics statistics;
    for (double latency : latencies)
    {
      statistics.Record(T0, 200, latency);
    }

    EXPECT_EQ(entry.second, statistics.Summarize(T0, 60).p95LatencyMs);
  }
}


TEST(RequestStatisticsTest, P95IgnoresOneSlowOutlierInTwenty)
{
  RequestStatistics statistics;
  for (int i = 0; i < 19; i++)
  {
    statistics.Record(T0, 200, 50);
  }
  statistics.Record(T0, 200, 90000);

  EXPECT_EQ(50, statistics.Summarize(T0, 60).p95LatencyMs);

  statistics.Record(T0, 200, 90000);
  EXPECT_EQ(90000, statistics.Summarize(T0, 60).p95LatencyMs);
}


TEST(RequestStatisticsTest, ErrorsGroupedByStatus)
{
  RequestStatistics statistics;
  for (long status : {200L, 201L, 202L, 299L, 429L, 429L, 503L, 0L, 0L, 0L, 404L, 302L, 199L})
  {
    statistics.Record(T0, status, 5);
  }

  const RequestSummary summary = statistics.Summarize(T0, 60);

  EXPECT_EQ(13u, summary.requests);
  EXPECT_EQ(9u, summary.errors);
  EXPECT_DOUBLE_EQ(9.0 / 13.0, summary.errorRate);

  const std::map<long, uint64_t> expected = {{0, 3},   {199, 1}, {302, 1},
                                             {404, 1}, {429, 2}, {503, 1}};
  EXPECT_EQ(expected, summary.errorsByStatus);
}


TEST(RequestStatisticsTest, NoResponseCountsUnderZero)
{
  RequestStatistics statistics;
  statistics.Record(T0, 0, 10000);

  const RequestSummary summary = statistics.Summarize(T0, 60);

  EXPECT_EQ(1u, summary.errors);
  EXPECT_EQ(1, summary.errorRate);
  ASSERT_EQ(1u, summary.errorsByStatus.count(0));
  EXPECT_EQ(1u, summary.errorsByStatus.at(0));
  EXPECT_EQ(10000, summary.p95LatencyMs);
}


TEST(RequestStatisticsTest, WindowExcludesOlderRequests)
{
  RequestStatistics statistics;
  statistics.Record(T0, 500, 1000);                  // 301 s before the summary
  statistics.Record(T0 + 1 * SECOND_MS, 429, 2000);  // exactly 300 s before, so inside
  statistics.Record(T0 + 200 * SECOND_MS, 200, 30);
  statistics.Record(T0 + 301 * SECOND_MS, 200, 40);

  const RequestSummary shortWindow = statistics.Summarize(T0 + 301 * SECOND_MS, 300);
  EXPECT_EQ(3u, shortWindow.requests);
  EXPECT_EQ(1u, shortWindow.errors);
  EXPECT_EQ(0u, shortWindow.errorsByStatus.count(500));
  EXPECT_EQ(1u, shortWindow.errorsByStatus.count(429));
  EXPECT_EQ(2000, shortWindow.p95LatencyMs);
  EXPECT_DOUBLE_EQ(3.0 / 300.0, shortWindow.requestsPerSecond);

  const RequestSummary longWindow = statistics.Summarize(T0 + 301 * SECOND_MS, 3600);
  EXPECT_EQ(4u, longWindow.requests);
  EXPECT_EQ(2u, longWindow.errors);
  EXPECT_EQ(3600u, longWindow.windowSeconds);

  // Later, the same requests have left the short window.
  EXPECT_EQ(0u, statistics.Summarize(T0 + 700 * SECOND_MS, 300).requests);
}


TEST(RequestStatisticsTest, OlderThanAnHourIsForgotten)
{
  RequestStatistics statistics;
  statistics.Record(T0, 500, 1);
  statistics.Record(T0 + 10 * SECOND_MS, 500, 1);
  statistics.Record(T0 + HOUR_MS + 5 * SECOND_MS, 200, 1);

  // A window longer than the history shows what the history kept. The request at T0 was more
  // than HISTORY_SECONDS older than the last one recorded, so it is gone.
  const RequestSummary summary = statistics.Summarize(T0 + HOUR_MS + 5 * SECOND_MS, 7200);
  EXPECT_EQ(2u, summary.requests);
  EXPECT_EQ(1u, summary.errors);
}


TEST(RequestStatisticsTest, SamplesAreCapped)
{
  RequestStatistics statistics;
  const size_t maxSamples = RequestStatistics::MAX_SAMPLES;
  const size_t extra = 5;

  // The oldest samples are errors, so that their removal shows in the summary.
  for (size_t i = 0; i < extra; i++)
  {
    statistics.Record(T0, 500, 1);
  }
  for (size_t i = 0; i < maxSamples; i++)
  {
    statistics.Record(T0 + 1, 200, 1);
  }

  const RequestSummary summary = statistics.Summarize(T0 + 1, 60);
  EXPECT_EQ(maxSamples, summary.requests);
  EXPECT_EQ(0u, summary.errors);
  EXPECT_TRUE(summary.errorsByStatus.empty());
}


TEST(RequestStatisticsTest, ConcurrentRecordsAreCounted)
{
  RequestStatistics statistics;
  const int threadCount = 4;
  const int perThread = 2000;

  std::vector<std::thread> threads;
  for (int t = 0; t < threadCount; t++)
  {
    threads.emplace_back(
        [&statistics, t]
        {
          for (int i = 0; i < perThread; i++)
          {
            statistics.Record(T0, t == 0 ? 503 : 200, 1);
          }
        });
  }
  for (std::thread& thread : threads)
  {
    thread.join();
  }

  const RequestSummary summary = statistics.Summarize(T0, 60);
  EXPECT_EQ(static_cast<uint64_t>(threadCount * perThread), summary.requests);
  EXPECT_EQ(static_cast<uint64_t>(perThread), summary.errorsByStatus.at(503));
}


TEST(StatusHistoryTest, FirstSampleIsAdded)
{
  StatusHistory history;
  StatusSample sample = MakeSample(T0, 12);
  sample.counts.counts[static_cast<size_t>(ItemState::Pending)] = 3;
  sample.counts.counts[static_cast<size_t>(ItemState::Failed)] = 1;

  EXPECT_TRUE(history.Add(sample));

  const std::vector<StatusSample> samples = history.Get(T0);
  ASSERT_EQ(1u, samples.size());
  EXPECT_EQ(T0, samples[0].timeMs);
  EXPECT_EQ(12u, samples[0].sentInstances);
  EXPECT_EQ(12000u, samples[0].sentBytes);
  EXPECT_EQ(3u, samples[0].counts.Get(ItemState::Pending));
  EXPECT_EQ(1u, samples[0].counts.Get(ItemState::Failed));
  EXPECT_EQ(0u, samples[0].counts.Get(ItemState::Mirrored));
}


TEST(StatusHistoryTest, OneSamplePerInterval)
{
  StatusHistory history;
  ASSERT_TRUE(history.Add(MakeSample(T0, 1)));

  EXPECT_FALSE(history.Add(MakeSample(T0, 2)));
  EXPECT_FALSE(history.Add(MakeSample(T0 + 5 * SECOND_MS, 3)));
  EXPECT_TRUE(history.Add(MakeSample(T0 + 10 * SECOND_MS, 4)));
  EXPECT_FALSE(history.Add(MakeSample(T0 + 19 * SECOND_MS, 5)));
  EXPECT_TRUE(history.Add(MakeSample(T0 + 30 * SECOND_MS, 6)));

  const std::vector<StatusSample> samples = history.Get(T0 + 30 * SECOND_MS);
  ASSERT_EQ(3u, samples.size());
  EXPECT_EQ(1u, samples[0].sentInstances);
  EXPECT_EQ(4u, samples[1].sentInstances);
  EXPECT_EQ(6u, samples[2].sentInstances);
}


TEST(StatusHistoryTest, SampleMayComeHalfSecondEarly)
{
  StatusHistory history;
  ASSERT_TRUE(history.Add(MakeSample(T0)));

  EXPECT_FALSE(history.Add(MakeSample(T0 + 9499)));
  EXPECT_TRUE(history.Add(MakeSample(T0 + 9500)));
}


TEST(StatusHistoryTest, OlderSampleIsNotAdded)
{
  StatusHistory history;
  ASSERT_TRUE(history.Add(MakeSample(T0 + 60 * SECOND_MS)));

  EXPECT_FALSE(history.Add(MakeSample(T0)));
  EXPECT_EQ(1u, history.Get(T0 + 60 * SECOND_MS).size());
}


TEST(StatusHistoryTest, KeepsOneHourOldestFirst)
{
  StatusHistory history;
  const int64_t interval = StatusHistory::INTERVAL_SECONDS * SECOND_MS;
  const int64_t count = 2 * 3600 / StatusHistory::INTERVAL_SECONDS;  // two hours of samples
  for (int64_t i = 0; i <= count; i++)
  {
    ASSERT_TRUE(history.Add(MakeSample(T0 + i * interval, static_cast<uint64_t>(i))));
  }

  const int64_t now = T0 + count * interval;
  const std::vector<StatusSample> samples = history.Get(now);

  // One hour back from the last sample, both ends included.
  ASSERT_EQ(static_cast<size_t>(3600 / StatusHistory::INTERVAL_SECONDS + 1), samples.size());
  EXPECT_EQ(now - HOUR_MS, samples.front().timeMs);
  EXPECT_EQ(now, samples.back().timeMs);
  for (size_t i = 1; i < samples.size(); i++)
  {
    EXPECT_EQ(samples[i - 1].timeMs + interval, samples[i].timeMs) << "sample " << i;
  }
}


TEST(StatusHistoryTest, GetDropsSamplesOlderThanHour)
{
  StatusHistory history;
  ASSERT_TRUE(history.Add(MakeSample(T0, 1)));
  ASSERT_TRUE(history.Add(MakeSample(T0 + 30 * 60 * SECOND_MS, 2)));

  // No sample came for a while, as when the monitor stops, so Get() alone limits the hour.
  const std::vector<StatusSample> samples = history.Get(T0 + HOUR_MS + SECOND_MS);
  ASSERT_EQ(1u, samples.size());
  EXPECT_EQ(2u, samples[0].sentInstances);

  EXPECT_EQ(2u, history.Get(T0 + HOUR_MS).size());
  EXPECT_TRUE(history.Get(T0 + 2 * HOUR_MS).empty());
}
