#include "Sync/StoredFileCache.h"
#include "Sync/StoredInstanceCache.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <string>

using namespace AzureDicom;

namespace
{
std::string MakeId(size_t number)
{
  return ComputeOrthancId(std::to_string(number));
}


// Returns size bytes that differ from one file number to the next.
std::string MakeFile(size_t number, size_t size)
{
  std::string file(size, '\0');
  for (size_t i = 0; i < size; i++)
  {
    file[i] = static_cast<char>((number * 31 + i) % 251);
  }
  return file;
}


std::string TakeText(StoredFileCache& cache, const std::string& orthancId, uint64_t size)
{
  const std::unique_ptr<IBuffer> file = cache.Take(orthancId, size);
  return file ? std::string(file->GetData(), file->GetSize()) : "<null>";
}
}  // namespace


TEST(StoredFileCache, KeepThenTake)
{
  StoredFileCache cache(64 * 1024);
  const std::string file = MakeFile(1, 2000);
  ASSERT_TRUE(cache.Keep(MakeId(1), file.data(), file.size()));
  EXPECT_EQ(1u, cache.GetSize());

  EXPECT_EQ(file, TakeText(cache, MakeId(1), file.size()));
  EXPECT_EQ(0u, cache.GetSize());
  EXPECT_EQ("<null>", TakeText(cache, MakeId(1), file.size()));
}


TEST(StoredFileCache, UnsuitableFilesNotKept)
{
  StoredFileCache cache(1024 * 1024);
  const std::string large = MakeFile(1, StoredFileCache::MAX_FILE_BYTES + 1);
  EXPECT_FALSE(cache.Keep(MakeId(1), large.data(), large.size()));
  EXPECT_FALSE(cache.Keep(MakeId(2), large.data(), 0));
  EXPECT_FALSE(cache.Keep(MakeId(3), nullptr, 0));
  EXPECT_FALSE(cache.Keep("short-id", large.data(), 100));
  EXPECT_EQ(0u, cache.GetSize());

  // An ID of another length is not found, also among files that the cache has.
  ASSERT_TRUE(cache.Keep(MakeId(4), large.data(), 100));
  EXPECT_EQ("<null>", TakeText(cache, "short-id", 100));
  cache.Forget("short-id");
  EXPECT_EQ(1u, cache.GetSize());
}


TEST(StoredFileCache, OtherSizeIsDropped)
{
  StoredFileCache cache(64 * 1024);
  const std::string file = MakeFile(1, 2000);
  ASSERT_TRUE(cache.Keep(MakeId(1), file.data(), file.size()));

  EXPECT_EQ("<null>", TakeText(cache, MakeId(1), 2001));
  EXPECT_EQ(0u, cache.GetSize());
}


TEST(StoredFileCache, ForgetRemoves)
{
  StoredFileCache cache(64 * 1024);
  const std::string file = MakeFile(1, 2000);
  ASSERT_TRUE(cache.Keep(MakeId(1), file.data(), file.size()));
  cache.Forget(MakeId(1));

  EXPECT_EQ(0u, cache.GetSize());
  EXPECT_EQ("<null>", TakeText(cache, MakeId(1), file.size()));
}


TEST(StoredFileCache, OldestDroppedWhenFull)
{
  // Three files of 3,000 bytes fill 10,000 bytes. The fourth starts the next lap, over the
  // first file.
  StoredFileCache cache(10000);
  for (size_t i = 1; i <= 4; i++)
  {
    const std::string file = MakeFile(i, 3000);
    ASSERT_TRUE(cache.Keep(MakeId(i), file.data(), file.size()));
  }
  EXPECT_EQ(3u, cache.GetSize());

  EXPECT_EQ("<null>", TakeText(cache, MakeId(1), 3000));
  for (size_t i = 2; i <= 4; i++)
  {
    EXPECT_EQ(MakeFile(i, 3000), TakeText(cache, MakeId(i), 3000)) << "file " << i;
  }
}


TEST(StoredFileCache, KeepsAtMostMaxFiles)
{
  StoredFileCache cache(StoredFileCache::MAX_FILES * 16);
  for (size_t i = 0; i <= StoredFileCache::MAX_FILES; i++)
  {
    const std::string file = MakeFile(i, 10);
    ASSERT_TRUE(cache.Keep(MakeId(i), file.data(), file.size()));
  }
  EXPECT_EQ(StoredFileCache::MAX_FILES, cache.GetSize());

  EXPECT_EQ("<null>", TakeText(cache, MakeId(0), 10));
  EXPECT_EQ(MakeFile(1, 10), TakeText(cache, MakeId(1), 10));
  EXPECT_EQ(MakeFile(StoredFileCache::MAX_FILES, 10),
            TakeText(cache, MakeId(StoredFileCache::MAX_FILES), 10));
}


TEST(StoredFileCache, MatchesModelUnderChurn)
{
  // Files of random sizes over many laps of a small ring, some taken or forgotten. A file that
  // the cache returns must be exactly the bytes kept, and the newest files must be there.
  const size_t capacity = 100000;
  StoredFileCache cache(capacity);
  std::mt19937 random(11);
  std::map<size_t, size_t> sizes;  // the files kept and not removed, by number
  std::deque<size_t> order;        // the numbers in the order of keeping
  for (size_t number = 0; number < 3000; number++)
  {
    const size_t size = 1 + random() % 5000;
    const std::string file = MakeFile(number, size);
    ASSERT_TRUE(cache.Keep(MakeId(number), file.data(), file.size()));
    sizes[number] = size;
    order.push_back(number);

    if (random() % 4 == 0)
    {
      const size_t chosen = order[random() % order.size()];
      const auto found = sizes.find(chosen);
      if (random() % 2 == 0)
      {
        const std::string taken =
            TakeText(cache, MakeId(chosen), found == sizes.end() ? 1 : found->second);
        if (taken != "<null>")
        {
          ASSERT_NE(sizes.end(), found) << "file " << chosen << " was removed before";
          EXPECT_EQ(MakeFile(chosen, found->second), taken) << "file " << chosen;
        }
      }
      else
      {
        cache.Forget(MakeId(chosen));
      }
      sizes.erase(chosen);
    }
  }

  // The newest files that fit in half the ring are all there, whatever the wrapping.
  size_t newestBytes = 0;
  for (auto number = order.rbegin(); number != order.rend(); ++number)
  {
    const auto found = sizes.find(*number);
    if (found == sizes.end())
    {
      continue;
    }
    newestBytes += found->second;
    if (newestBytes > capacity / 2)
    {
      break;
    }
    EXPECT_EQ(MakeFile(*number, found->second), TakeText(cache, MakeId(*number), found->second))
        << "file " << *number;
  }
}
