#include "Common/WakeSignal.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

using namespace AzureDicom;

TEST(WakeSignal, RaisedBeforeWaitIsKept)
{
  WakeSignal signal;
  signal.Raise();
  signal.Raise();
  EXPECT_TRUE(signal.Wait(0));
  EXPECT_FALSE(signal.Wait(0));  // both raises were cleared by the one wait
}


TEST(WakeSignal, WaitTimesOut)
{
  WakeSignal signal;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(signal.Wait(50));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
}


TEST(WakeSignal, RaiseWakesWaitingThread)
{
  WakeSignal signal;
  std::thread raiser([&signal]
                     {
                       std::this_thread::sleep_for(std::chrono::milliseconds(50));
                       signal.Raise();
                     });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(signal.Wait(10000));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  raiser.join();
}
