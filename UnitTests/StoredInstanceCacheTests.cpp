#include "DicomFileBuilder.h"
#include "Sync/StoredInstanceCache.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

using namespace AzureDicom;

namespace
{
// An instance that Orthanc 1.10.1 stored, with the IDs that it returned for it.
const char PATIENT_ID[] = "BENCH000002";  // 11 characters, so the file pads it with a space
const char STUDY_UID[] = "1.2.826.0.1.3680043.8.498.68359626404192280559343444268327633104";
const char SERIES_UID[] = "1.2.826.0.1.3680043.8.498.13199556301071465542534123114588730038";
const char SOP_UID[] = "1.2.826.0.1.3680043.8.498.13480717824940270957847191230155720119";
const char ORTHANC_INSTANCE_ID[] = "f86ca4cb-e0497ef7-950bbb08-958c1a86-4be2f2ae";
const char ORTHANC_STUDY_ID[] = "4afc09a4-9c8f65d3-0bec8baf-796839e5-422e5e7d";


std::string MakeFile(const std::string& patientId, const std::string& sopUid)
{
  DicomFileBuilder builder("1.2.840.10008.1.2.1");
  builder.Add(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.2")
      .Add(0x0008, 0x0018, "UI", sopUid)
      .Add(0x0010, 0x0020, "LO", patientId)
      .Add(0x0020, 0x000D, "UI", STUDY_UID)
      .Add(0x0020, 0x000E, "UI", SERIES_UID);
  return builder.GetFile();
}


std::string ComputeInstanceId(const std::string& patientId, const std::string& sopUid)
{
  return ComputeOrthancId(patientId + "|" + STUDY_UID + "|" + SERIES_UID + "|" + sopUid);
}
}  // namespace


TEST(StoredInstanceCache, OrthancIdsMatchOrthanc)
{
  EXPECT_EQ(ORTHANC_INSTANCE_ID, ComputeInstanceId(PATIENT_ID, SOP_UID));
  EXPECT_EQ(ORTHANC_STUDY_ID, ComputeOrthancId(std::string(PATIENT_ID) + "|" + STUDY_UID));
}


TEST(StoredInstanceCache, NoteThenTake)
{
  StoredInstanceCache cache;
  const std::string file = MakeFile(PATIENT_ID, SOP_UID);
  ASSERT_TRUE(cache.Note(ORTHANC_INSTANCE_ID, file.data(), file.size()));
  EXPECT_EQ(1u, cache.GetSize());

  NewInstance instance;
  ASSERT_TRUE(cache.Take(instance, ORTHANC_INSTANCE_ID));
  EXPECT_EQ(ORTHANC_INSTANCE_ID, instance.orthancId);
  EXPECT_EQ(SOP_UID, instance.sopInstanceUid);
  EXPECT_EQ(SERIES_UID, instance.seriesInstanceUid);
  EXPECT_EQ(STUDY_UID, instance.studyInstanceUid);
  EXPECT_EQ(ORTHANC_STUDY_ID, instance.orthancStudyId);
  EXPECT_EQ(file.size(), instance.size);
  EXPECT_EQ("", instance.fileUuid);

  EXPECT_FALSE(cache.Take(instance, ORTHANC_INSTANCE_ID));
  EXPECT_EQ(0u, cache.GetSize());
}


TEST(StoredInstanceCache, OtherIdIsNotKept)
{
  StoredInstanceCache cache;
  const std::string file = MakeFile(PATIENT_ID, SOP_UID);
  const std::string otherId = ComputeInstanceId(PATIENT_ID, "1.2.3");
  EXPECT_FALSE(cache.Note(otherId, file.data(), file.size()));
  EXPECT_EQ(0u, cache.GetSize());

  NewInstance instance;
  EXPECT_FALSE(cache.Take(instance, otherId));

  // An ID of another length is not found, also while the cache has entries.
  ASSERT_TRUE(cache.Note(ORTHANC_INSTANCE_ID, file.data(), file.size()));
  EXPECT_FALSE(cache.Take(instance, "short-id"));
  cache.Forget("short-id");
  EXPECT_EQ(1u, cache.GetSize());
}


TEST(StoredInstanceCache, LeadingSpacesOfPatientId)
{
  StoredInstanceCache cache;
  const std::string file = MakeFile("  PAT7", SOP_UID);
  const std::string orthancId = ComputeInstanceId("PAT7", SOP_UID);
  ASSERT_TRUE(cache.Note(orthancId, file.data(), file.size()));

  NewInstance instance;
  ASSERT_TRUE(cache.Take(instance, orthancId));
  EXPECT_EQ(ComputeOrthancId(std::string("PAT7|") + STUDY_UID), instance.orthancStudyId);
}


TEST(StoredInstanceCache, UnreadableFileIsNotKept)
{
  StoredInstanceCache cache;
  const std::string garbage(1000, '\x01');
  EXPECT_FALSE(cache.Note(ORTHANC_INSTANCE_ID, garbage.data(), garbage.size()));
  EXPECT_FALSE(cache.Note(ORTHANC_INSTANCE_ID, nullptr, 0));
  EXPECT_EQ(0u, cache.GetSize());
}


TEST(StoredInstanceCache, ForgetRemoves)
{
  StoredInstanceCache cache;
  const std::string file = MakeFile(PATIENT_ID, SOP_UID);
  ASSERT_TRUE(cache.Note(ORTHANC_INSTANCE_ID, file.data(), file.size()));
  cache.Forget(ORTHANC_INSTANCE_ID);

  NewInstance instance;
  EXPECT_FALSE(cache.Take(instance, ORTHANC_INSTANCE_ID));
}


TEST(StoredInstanceCache, OldestEntriesGoFirst)
{
  StoredInstanceCache cache;
  std::vector<std::string> ids;
  for (size_t i = 0; i <= StoredInstanceCache::MAX_ENTRIES; i++)
  {
    const std::string sopUid = "1.2.3." + std::to_string(i);
    const std::string file = MakeFile(PATIENT_ID, sopUid);
    ids.push_back(ComputeInstanceId(PATIENT_ID, sopUid));
    ASSERT_TRUE(cache.Note(ids.back(), file.data(), file.size()));
  }
  EXPECT_EQ(StoredInstanceCache::MAX_ENTRIES, cache.GetSize());

  NewInstance instance;
  EXPECT_FALSE(cache.Take(instance, ids.front()));
  ASSERT_TRUE(cache.Take(instance, ids.back()));
  EXPECT_EQ("1.2.3." + std::to_string(StoredInstanceCache::MAX_ENTRIES), instance.sopInstanceUid);
}


TEST(StoredInstanceCache, StoredAgainReplacesEntry)
{
  StoredInstanceCache cache;
  const std::string first = MakeFile(PATIENT_ID, SOP_UID);
  const std::string second = first + std::string(100, '\0');  // trailing bytes, same UIDs
  ASSERT_TRUE(cache.Note(ORTHANC_INSTANCE_ID, first.data(), first.size()));
  ASSERT_TRUE(cache.Note(ORTHANC_INSTANCE_ID, second.data(), second.size()));
  EXPECT_EQ(1u, cache.GetSize());

  NewInstance instance;
  ASSERT_TRUE(cache.Take(instance, ORTHANC_INSTANCE_ID));
  EXPECT_EQ(second.size(), instance.size);
  EXPECT_FALSE(cache.Take(instance, ORTHANC_INSTANCE_ID));
}


TEST(StoredInstanceCache, LongUidIsNotKept)
{
  StoredInstanceCache cache;
  const std::string sopUid = "1.2.3." + std::string(65, '7');  // longer than DICOM's 64
  const std::string file = MakeFile(PATIENT_ID, sopUid);
  EXPECT_FALSE(cache.Note(ComputeInstanceId(PATIENT_ID, sopUid), file.data(), file.size()));
  EXPECT_EQ(0u, cache.GetSize());
}


TEST(StoredInstanceCache, MatchesModelUnderChurn)
{
  // Calls Note, Take and Forget in a random order, more often than the cache has entries, and
  // compares with a model: an entry stays until it is taken, forgotten, or MAX_ENTRIES newer
  // notes overwrote it.
  StoredInstanceCache cache;
  std::mt19937 random(7);
  std::vector<std::string> ids;
  std::map<std::string, size_t> notedAt;  // the note's number, for the entries not removed
  size_t notes = 0;
  const size_t total = 3 * StoredInstanceCache::MAX_ENTRIES;
  for (size_t i = 0; i < total; i++)
  {
    const unsigned int action = random() % 10;
    if (action < 6 || ids.empty())
    {
      // A new instance, or sometimes one noted before, stored again.
      std::string sopUid = "1.2.3." + std::to_string(ids.size());
      if (action == 0 && !ids.empty())
      {
        sopUid = "1.2.3." + std::to_string(random() % ids.size());
      }
      else
      {
        ids.push_back(ComputeInstanceId(PATIENT_ID, sopUid));
      }
      const std::string file = MakeFile(PATIENT_ID, sopUid);
      const std::string id = ComputeInstanceId(PATIENT_ID, sopUid);
      ASSERT_TRUE(cache.Note(id, file.data(), file.size()));
      notedAt[id] = notes++;
    }
    else
    {
      const std::string& id = ids[random() % ids.size()];
      auto noted = notedAt.find(id);
      const bool expected =
          noted != notedAt.end() && notes - noted->second <= StoredInstanceCache::MAX_ENTRIES;
      NewInstance instance;
      if (action < 9)
      {
        ASSERT_EQ(expected, cache.Take(instance, id)) << "operation " << i;
        if (expected)
        {
          EXPECT_EQ(id, instance.orthancId);
        }
      }
      else
      {
        cache.Forget(id);
      }
      if (noted != notedAt.end())
      {
        notedAt.erase(noted);
      }
    }
  }

  size_t live = 0;
  for (const auto& noted : notedAt)
  {
    live += (notes - noted.second <= StoredInstanceCache::MAX_ENTRIES) ? 1 : 0;
  }
  EXPECT_EQ(live, cache.GetSize());
  for (const auto& noted : notedAt)
  {
    NewInstance instance;
    EXPECT_EQ(notes - noted.second <= StoredInstanceCache::MAX_ENTRIES,
              cache.Take(instance, noted.first));
  }
  EXPECT_EQ(0u, cache.GetSize());
}
