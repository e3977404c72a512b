#include "DicomFileBuilder.h"
#include "Sync/StoredInstanceCache.h"

#include <gtest/gtest.h>

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
