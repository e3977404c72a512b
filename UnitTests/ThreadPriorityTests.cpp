#include "Common/ThreadPriority.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <sys/syscall.h>
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
