#include "Sync/RetryPolicy.h"

#include <gtest/gtest.h>

using namespace AzureDicom;

namespace
{
RetrySettings MakeSettings()
{
  RetrySettings settings;
  settings.initialDelaySeconds = 2;
  settings.maxDelaySeconds = 60;
  settings.maxAttempts = 5;
  return settings;
}
}  // namespace


TEST(RetryPolicyTest, DelayDoublesUpToMax)
{
  const RetryPolicy policy(MakeSettings());
  EXPECT_DOUBLE_EQ(2, policy.GetItemDelaySeconds(1, 1.0));
  EXPECT_DOUBLE_EQ(4, policy.GetItemDelaySeconds(2, 1.0));
  EXPECT_DOUBLE_EQ(8, policy.GetItemDelaySeconds(3, 1.0));
  EXPECT_DOUBLE_EQ(60, policy.GetItemDelaySeconds(10, 1.0));
  EXPECT_DOUBLE_EQ(60, policy.GetItemDelaySeconds(4000000000u, 1.0));
}


TEST(RetryPolicyTest, TinyInitialDelayReachesMax)
{
  RetrySettings settings = MakeSettings();
  settings.initialDelaySeconds = 1e-300;
  settings.maxDelaySeconds = 600;
  const RetryPolicy policy(settings);

  EXPECT_DOUBLE_EQ(600, policy.GetItemDelaySeconds(1100, 1.0));
  EXPECT_DOUBLE_EQ(600, policy.GetDestinationDelaySeconds(4000000000u, -1, 1.0));
}


TEST(RetryPolicyTest, MinimumInitialDelayReachesMax)
{
  RetrySettings settings = MakeSettings();
  settings.initialDelaySeconds = 0.01;
  settings.maxDelaySeconds = 86400;
  const RetryPolicy policy(settings);

  EXPECT_DOUBLE_EQ(86400, policy.GetItemDelaySeconds(25, 1.0));
}


TEST(RetryPolicyTest, JitterSpansUpperHalf)
{
  const RetryPolicy policy(MakeSettings());
  EXPECT_DOUBLE_EQ(4, policy.GetItemDelaySeconds(3, 0.0));
  EXPECT_DOUBLE_EQ(6, policy.GetItemDelaySeconds(3, 0.5));
  EXPECT_DOUBLE_EQ(4, policy.GetItemDelaySeconds(3, -3.0));
  EXPECT_DOUBLE_EQ(8, policy.GetItemDelaySeconds(3, 7.0));
}


TEST(RetryPolicyTest, RetryAfterWinsButIsCapped)
{
  const RetryPolicy policy(MakeSettings());
  EXPECT_DOUBLE_EQ(17, policy.GetDestinationDelaySeconds(1, 17, 0.3));
  EXPECT_DOUBLE_EQ(0, policy.GetDestinationDelaySeconds(4, 0, 0.3));
  EXPECT_DOUBLE_EQ(60, policy.GetDestinationDelaySeconds(1, 3600, 0.3));
  EXPECT_DOUBLE_EQ(16, policy.GetDestinationDelaySeconds(4, -1, 1.0));
}


TEST(RetryPolicyTest, ExhaustedAtMaxAttempts)
{
  const RetryPolicy policy(MakeSettings());
  EXPECT_FALSE(policy.IsExhausted(4));
  EXPECT_TRUE(policy.IsExhausted(5));
  EXPECT_TRUE(policy.IsExhausted(6));
}
