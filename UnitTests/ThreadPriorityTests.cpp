#include "Common/ThreadPriority.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace AzureDicom;

namespace
{
class CollectingLogger : public ILogger
{
public:
  void Info(const std::string& message) override
  {
    lines.push_back(message);
  }
  void Warning(const std::string& message) override
  {
    lines.push_back(message);
  }
  void Error(const std::string& message) override
  {
    lines.push_back(message);
  }

  std::vector<std::string> lines;
};


// Runs LowerCurrentThreadPriority(niceness) in a new thread and returns that thread's nice value
// afterwards.
int LowerInNewThread(int niceness, CollectingLogger& logger)
{
  int result = -100;
  std::thread thread([&] {
    LowerCurrentThreadPriority(niceness, logger);
    result = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
  });
  thread.join();
  return result;
}
}  // namespace


TEST(ThreadPriority, NamesCallingThread)
{
  const auto readName = []() {
    std::ifstream comm("/proc/thread-self/comm");
    std::string name;
    std::getline(comm, name);
    return name;
  };
  const std::string before = readName();

  std::string named;
  std::string truncated;
  std::thread([&]() {
    NameCurrentThread("azure-stow-1");
    named = readName();
    NameCurrentThread("azure-stow-123456789");
    truncated = readName();
  }).join();

  EXPECT_EQ("azure-stow-1", named);
  EXPECT_EQ("azure-stow-1234", truncated);  // Linux keeps 15 characters
  EXPECT_EQ(before, readName());            // the test's own thread keeps its name
}


TEST(ThreadPriority, LowersOnlyCallingThread)
{
  CollectingLogger logger;
  const int before = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));

  // A process that already runs at a lower priority keeps it.
  EXPECT_EQ(std::max(before, MIRROR_THREAD_NICENESS),
            LowerInNewThread(MIRROR_THREAD_NICENESS, logger));
  EXPECT_EQ(before, getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid))));
  EXPECT_TRUE(logger.lines.empty());
}


TEST(ThreadPriority, ZeroKeepsPriority)
{
  CollectingLogger logger;
  const int before = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));

  EXPECT_EQ(before, LowerInNewThread(0, logger));
}


TEST(ThreadPriority, IdleOnlyForCallingThread)
{
  const bool canRestore = CanRestoreCurrentThreadPriority();
  int during = -1;
  int after = -1;
  bool left = false;
  std::thread thread([&] {
    const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
    ASSERT_TRUE(SetCurrentThreadIdle(true));
    during = sched_getscheduler(self);
    left = SetCurrentThreadIdle(false);
    after = sched_getscheduler(self);
  });
  thread.join();

  EXPECT_EQ(SCHED_IDLE, during);
  EXPECT_EQ(SCHED_OTHER, sched_getscheduler(0));
  // Leaving SCHED_IDLE succeeds exactly where CanRestoreCurrentThreadPriority() returns true.
  EXPECT_EQ(canRestore, left);
  EXPECT_EQ(canRestore ? SCHED_OTHER : SCHED_IDLE, after);
}


TEST(ThreadPriority, MirrorThreadYieldsAndReturns)
{
  CollectingLogger logger;
  const int before = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
  const bool canRestore = CanRestoreCurrentThreadPriority();
  std::vector<int> policies;
  std::vector<int> niceness;
  std::thread thread([&] {
    const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
    std::atomic<bool> reported{false};
    MirrorThreadPriority priority(logger, reported);
    for (bool ingesting : {true, true, false, true, false})
    {
      priority.Adjust(ingesting);
      policies.push_back(sched_getscheduler(self));
      niceness.push_back(GetCurrentThreadNiceness());
    }
  });
  thread.join();

  ASSERT_EQ(5u, policies.size());
  if (canRestore)
  {
    EXPECT_EQ((std::vector<int>{SCHED_IDLE, SCHED_IDLE, SCHED_OTHER, SCHED_IDLE, SCHED_OTHER}),
              policies);
    EXPECT_EQ(std::vector<int>(5, before), niceness);
    EXPECT_TRUE(logger.lines.empty());
  }
  else
  {
    EXPECT_EQ(std::vector<int>(5, SCHED_OTHER), policies);
    EXPECT_EQ(std::vector<int>(5, std::max(before, MIRROR_THREAD_NICENESS)), niceness);
  }
}


TEST(ThreadPriority, OrthancCallRunsAtOrthancPriority)
{
  if (!CanRestoreCurrentThreadPriority())
  {
    GTEST_SKIP() << "leaving SCHED_IDLE needs CAP_SYS_NICE or a high RLIMIT_NICE";
  }

  std::vector<int> policies;
  std::thread thread([&] {
    const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
    {
      const OrthancCallPriority call;  // at Orthanc's priority already: nothing changes
      policies.push_back(sched_getscheduler(self));
    }
    policies.push_back(sched_getscheduler(self));

    ASSERT_TRUE(SetCurrentThreadIdle(true));
    {
      const OrthancCallPriority call;
      policies.push_back(sched_getscheduler(self));
    }
    policies.push_back(sched_getscheduler(self));
    EXPECT_TRUE(IsCurrentThreadIdle());
  });
  thread.join();

  EXPECT_EQ((std::vector<int>{SCHED_OTHER, SCHED_OTHER, SCHED_OTHER, SCHED_IDLE}), policies);
  EXPECT_FALSE(IsCurrentThreadIdle());
}


TEST(ThreadPriority, WithoutPermissionStaysNice)
{
  // In a child process without CAP_SYS_NICE and with RLIMIT_NICE 0, as Orthanc runs as a
  // service user or in a container: exit code 0 when the mirror thread went to nice 10 at the
  // first ingestion and stayed there.
  const pid_t child = fork();
  ASSERT_NE(-1, child);
  if (child == 0)
  {
    const rlimit noRaise{0, 0};
    if ((geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) ||
        setrlimit(RLIMIT_NICE, &noRaise) != 0)
    {
      _exit(10);
    }
    if (CanRestoreCurrentThreadPriority())
    {
      _exit(11);
    }
    int code = 12;
    std::thread thread([&] {
      CollectingLogger logger;
      std::atomic<bool> reported{false};
    MirrorThreadPriority priority(logger, reported);
      priority.Adjust(true);
      const int during = GetCurrentThreadNiceness();
      const int policy = sched_getscheduler(0);
      priority.Adjust(false);
      const int after = GetCurrentThreadNiceness();
      const bool logged = !logger.lines.empty() &&
                          logger.lines.front().find("needs CAP_SYS_NICE") != std::string::npos;
      code = (during >= MIRROR_THREAD_NICENESS && after == during && policy == SCHED_OTHER &&
              logged) ? 0 : 13;
    });
    thread.join();
    _exit(code);
  }

  int status = 0;
  ASSERT_EQ(child, waitpid(child, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(0, WEXITSTATUS(status));
}


TEST(IngestionMonitor, EstimatesStoresOfLastSecond)
{
  IngestionMonitor monitor;
  const int64_t start = 1700000000000;  // at a whole second
  EXPECT_EQ(0u, monitor.GetStoresPerSecond(start));
  EXPECT_FALSE(monitor.IsIngesting(start));

  for (int i = 0; i < 40; i++)
  {
    monitor.NoteStore(start + i * 25);  // 40 stores in the first second
  }
  EXPECT_TRUE(monitor.IsIngesting(start + 999));
  EXPECT_EQ(40u, monitor.GetStoresPerSecond(start + 999));

  // Half a second later, half of that second is still in the window.
  EXPECT_EQ(20u, monitor.GetStoresPerSecond(start + 1500));
  monitor.NoteStore(start + 1500);
  EXPECT_EQ(21u, monitor.GetStoresPerSecond(start + 1500));

  // Two quiet seconds: nothing in the window, and no longer ingesting.
  EXPECT_EQ(0u, monitor.GetStoresPerSecond(start + 3600));
  EXPECT_FALSE(monitor.IsIngesting(start + 3600));
}


TEST(IngestionMonitor, CountsConcurrentStores)
{
  // Four threads note 250 stores each within one second, as Orthanc's store threads do.
  IngestionMonitor monitor;
  const int64_t start = 1700000000000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++)
  {
    threads.emplace_back([&monitor, start]
                         {
                           for (int i = 0; i < 250; i++)
                           {
                             monitor.NoteStore(start + i * 3);
                           }
                         });
  }
  for (std::thread& thread : threads)
  {
    thread.join();
  }
  EXPECT_EQ(1000u, monitor.GetStoresPerSecond(start + 999));

  // The first store of the next second moves the count into the bucket before.
  monitor.NoteStore(start + 1000);
  EXPECT_EQ(1001u, monitor.GetStoresPerSecond(start + 1000));
  EXPECT_EQ(501u, monitor.GetStoresPerSecond(start + 1500));
}


TEST(IngestionMonitor, HoldsDuringBurstForLimitedTime)
{
  IngestionMonitor monitor;
  const int64_t start = 1700000000000;
  int64_t now = start;

  // A slow store rate is not a burst.
  for (int i = 0; i < 20; i++)
  {
    monitor.NoteStore(now += 50);
  }
  EXPECT_FALSE(monitor.ShouldHold(now));

  // 100 stores per second for MAX_BURST_HOLD_MS and 5 s more: held until MAX_BURST_HOLD_MS,
  // then no longer.
  bool heldAtStart = false;
  bool heldLongAssociation = false;
  bool heldBeforeLimit = false;
  bool heldAfterLimit = true;
  bool burstAfterLimit = false;
  const int64_t burstStart = now;
  while (now < burstStart + MAX_BURST_HOLD_MS + 5000)
  {
    monitor.NoteStore(now += 10);
    const bool hold = monitor.ShouldHold(now);
    if (now - burstStart == 1000)
    {
      heldAtStart = hold;
    }
    if (now - burstStart == 20000)
    {
      // One C-STORE association of 20,000 small instances lasts 16 to 21 s.
      heldLongAssociation = hold;
    }
    if (now - burstStart == MAX_BURST_HOLD_MS - 1000)
    {
      heldBeforeLimit = hold;
    }
    if (now - burstStart == MAX_BURST_HOLD_MS + 2000)
    {
      heldAfterLimit = hold;
      burstAfterLimit = monitor.IsInBurst(now);
    }
  }
  EXPECT_TRUE(heldAtStart);
  EXPECT_TRUE(heldLongAssociation);
  EXPECT_TRUE(heldBeforeLimit);
  EXPECT_FALSE(heldAfterLimit);
  EXPECT_TRUE(burstAfterLimit);  // no longer held, but still a burst

  // The burst ends, and the next one is held again.
  now += 3000;
  EXPECT_FALSE(monitor.ShouldHold(now));
  for (int i = 0; i < 100; i++)
  {
    monitor.NoteStore(now += 10);
  }
  EXPECT_TRUE(monitor.ShouldHold(now));

  // A pause after the last store ends it, although the last second had 100 stores.
  EXPECT_TRUE(monitor.ShouldHold(now + BURST_END_GAP_MS));
  EXPECT_FALSE(monitor.ShouldHold(now + BURST_END_GAP_MS + 1));
  EXPECT_TRUE(monitor.IsInBurst(now + BURST_END_GAP_MS));
  EXPECT_FALSE(monitor.IsInBurst(now + BURST_END_GAP_MS + 1));
  now += 3000;
  for (int i = 0; i < 100; i++)
  {
    monitor.NoteStore(now += 10);
  }
  EXPECT_TRUE(monitor.ShouldHold(now));
}
