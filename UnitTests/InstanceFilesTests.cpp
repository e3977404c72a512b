#include "Common/Exception.h"
#include "Common/Md5.h"
#include "DicomFileBuilder.h"
#include "Sync/InstanceFiles.h"
#include "Sync/InstanceResolver.h"

#include <gtest/gtest.h>
#include <json/value.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace AzureDicom;

namespace
{
const char* const INSTANCE_ID = "0f1e2d3c-4b5a6978-8796a5b4-c3d2e1f0-01234567";
const char* const STORED_MD5 = "0123456789abcdef0123456789abcdef";


std::string Hash(const std::string& data)
{
  Md5 digest;
  digest.Update(data.data(), data.size());
  return digest.Finish();
}


// Returns the bodies of GET requests from a table of URIs. A URI in `failing` throws like a failed REST call.
class TableGateway : public IOrthancGateway
{
public:
  bool GetJson(Json::Value& answer, const std::string& uri) override
  {
    requests.push_back(uri);
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
    requests.push_back(uri);
    if (failing.count(uri) > 0)
    {
      throw Exception(ErrorCode::NetworkError, "Orthanc's REST API failed on " + uri);
    }
    const auto found = answers.find(uri);
    if (found == answers.end())
    {
      return false;
    }
    answer = found->second;
    return true;
  }

  std::map<std::string, std::string> answers;
  std::map<std::string, Json::Value> jsonAnswers;
  std::map<std::string, bool> failing;
  std::vector<std::string> requests;
};


std::string Md5Uri()
{
  return std::string("/instances/") + INSTANCE_ID + "/attachments/dicom/md5";
}


std::string FileUri()
{
  return std::string("/instances/") + INSTANCE_ID + "/file";
}
}  // namespace


TEST(InstanceFiles, LargeFileUsesStoredDigest)
{
  TableGateway orthanc;
  orthanc.answers[Md5Uri()] = std::string(STORED_MD5) + "\n";
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES, 'x');

  EXPECT_EQ(STORED_MD5, GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(Md5Uri(), orthanc.requests[0]);
}


TEST(InstanceFiles, SmallFileIsHashedWithoutRequest)
{
  TableGateway orthanc;
  orthanc.answers[Md5Uri()] = STORED_MD5;
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES - 1, 'x');

  EXPECT_EQ(Hash(file), GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()));
  EXPECT_TRUE(orthanc.requests.empty());
}


TEST(InstanceFiles, MissingStoredDigestFallsBackToHash)
{
  TableGateway orthanc;
  orthanc.failing[Md5Uri()] = true;
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES, 'y');

  EXPECT_EQ(Hash(file), GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()));
}


TEST(InstanceFiles, MalformedStoredDigestFallsBackToHash)
{
  const std::string file(MD5_FROM_ORTHANC_MIN_BYTES, 'z');
  for (const std::string& answer :
       {std::string(""), std::string("not a digest"), std::string("0123456789ABCDEF0123456789ABCDEF"),
        std::string(STORED_MD5) + "00"})
  {
    TableGateway orthanc;
    orthanc.answers[Md5Uri()] = answer;
    EXPECT_EQ(Hash(file), GetInstanceMd5(orthanc, INSTANCE_ID, file.data(), file.size()))
        << "stored digest \"" << answer << "\"";
  }
}


TEST(InstanceFiles, WithoutBytesReadsStoredDigestFirst)
{
  TableGateway orthanc;
  orthanc.answers[Md5Uri()] = STORED_MD5;
  orthanc.answers[FileUri()] = "content";

  EXPECT_EQ(STORED_MD5, GetInstanceMd5(orthanc, INSTANCE_ID));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(Md5Uri(), orthanc.requests[0]);
}


TEST(InstanceFiles, WithoutBytesHashesFileWhenNoDigest)
{
  TableGateway orthanc;
  orthanc.answers[FileUri()] = "content";

  EXPECT_EQ(Hash("content"), GetInstanceMd5(orthanc, INSTANCE_ID));
}


TEST(InstanceFiles, WithoutBytesMissingInstanceIsEmpty)
{
  TableGateway orthanc;

  EXPECT_EQ("", GetInstanceMd5(orthanc, INSTANCE_ID));
}


namespace
{
std::string StoredUri()
{
  return std::string("/instances/") + INSTANCE_ID + "/attachments/dicom/compressed-data";
}


// A file that starts like a DICOM file: the 128-byte preamble, then "DICM".
std::string MakeDicomLikeFile(size_t size)
{
  std::string file = std::string(128, '\0') + "DICM";
  file.resize(size, 'd');
  return file;
}


std::string ReadAll(InstanceFileReader& reader, uint64_t expectedSize)
{
  const std::unique_ptr<IBuffer> file = reader.Read(INSTANCE_ID, expectedSize);
  return file ? std::string(file->GetData(), file->GetSize()) : "<null>";
}
}  // namespace


TEST(InstanceFiles, UncompressedStorageSkipsFileRoute)
{
  TableGateway orthanc;
  orthanc.answers[StoredUri()] = MakeDicomLikeFile(1000);
  orthanc.answers[FileUri()] = MakeDicomLikeFile(1000);
  InstanceFileReader reader(orthanc);

  EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(StoredUri(), orthanc.requests[0]);
}


TEST(InstanceFiles, CompressedStorageFallsBackToFile)
{
  TableGateway orthanc;
  orthanc.answers[StoredUri()] = "zlib stream of another size";
  orthanc.answers[FileUri()] = MakeDicomLikeFile(1000);
  InstanceFileReader reader(orthanc);

  for (int i = 0; i < 3; i++)
  {
    EXPECT_TRUE(reader.ReadsStoredAttachments()) << "read " << i;
    EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000)) << "read " << i;
  }

  // Three files of another size in a row: only /file is read from then on.
  EXPECT_FALSE(reader.ReadsStoredAttachments());
  orthanc.requests.clear();
  EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(FileUri(), orthanc.requests[0]);
}


TEST(InstanceFiles, MatchingReadResetsMismatchCount)
{
  TableGateway orthanc;
  orthanc.answers[FileUri()] = MakeDicomLikeFile(1000);
  InstanceFileReader reader(orthanc);

  for (int i = 0; i < 10; i++)
  {
    orthanc.answers[StoredUri()] = i % 2 == 0 ? "other size" : MakeDicomLikeFile(1000);
    EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000)) << "read " << i;
  }
  EXPECT_TRUE(reader.ReadsStoredAttachments());
}


TEST(InstanceFiles, NonDicomStoredBytesReadFile)
{
  TableGateway orthanc;
  const std::string sameSizeNotDicom(1000, 'z');
  orthanc.answers[StoredUri()] = sameSizeNotDicom;
  orthanc.answers[FileUri()] = MakeDicomLikeFile(1000);
  InstanceFileReader reader(orthanc);

  for (int i = 0; i < 5; i++)
  {
    EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000)) << "read " << i;
  }

  // Bytes of the right size are no sign of compression, so the reader keeps trying.
  EXPECT_TRUE(reader.ReadsStoredAttachments());
  EXPECT_EQ(10u, orthanc.requests.size());
}


TEST(InstanceFiles, UnknownSizeReadsFileRoute)
{
  TableGateway orthanc;
  orthanc.answers[StoredUri()] = MakeDicomLikeFile(1000);
  orthanc.answers[FileUri()] = MakeDicomLikeFile(1000);
  InstanceFileReader reader(orthanc);

  EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 0));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(FileUri(), orthanc.requests[0]);
}


namespace
{
// Keeps a copy of the instance's file, of cachedSize bytes, in cache and lets reader take it,
// while Orthanc stores a file of storedSize bytes. Returns the copy.
std::string KeepInCache(StoredFileCache& cache, InstanceFileReader& reader, TableGateway& orthanc,
                        size_t cachedSize, size_t storedSize)
{
  orthanc.answers[StoredUri()] = MakeDicomLikeFile(storedSize);
  std::string cachedFile = MakeDicomLikeFile(cachedSize);
  cachedFile[cachedSize - 1] = 'c';  // not the bytes that Orthanc returns
  EXPECT_TRUE(cache.Keep(INSTANCE_ID, cachedFile.data(), cachedFile.size()));
  reader.SetStoredFileCache(&cache);
  return cachedFile;
}
}  // namespace


TEST(InstanceFiles, KeptFileReadWithoutRequest)
{
  TableGateway orthanc;
  StoredFileCache cache;
  InstanceFileReader reader(orthanc);
  const std::string cachedFile = KeepInCache(cache, reader, orthanc, 1000, 1000);

  EXPECT_EQ(cachedFile, ReadAll(reader, 1000));
  EXPECT_TRUE(orthanc.requests.empty());

  // The copy is taken, so the next read is from Orthanc.
  EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000));
  EXPECT_EQ(1u, orthanc.requests.size());
}


TEST(InstanceFiles, KeptFileOfOtherSizeReadsOrthanc)
{
  TableGateway orthanc;
  StoredFileCache cache;
  InstanceFileReader reader(orthanc);
  KeepInCache(cache, reader, orthanc, 1000, 1200);

  EXPECT_EQ(MakeDicomLikeFile(1200), ReadAll(reader, 1200));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(StoredUri(), orthanc.requests[0]);
  EXPECT_EQ(0u, cache.GetSize());
}


TEST(InstanceFiles, DeletedInstanceReadsNull)
{
  TableGateway orthanc;
  InstanceFileReader reader(orthanc);

  EXPECT_EQ("<null>", ReadAll(reader, 1000));
  EXPECT_EQ(1u, orthanc.requests.size());
}


namespace
{
const char* const ATTACHMENT_UUID = "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b";
const uint64_t LARGE_SIZE = InstanceFileReader::DIRECT_READ_MIN_BYTES;


std::string InfoUri()
{
  return std::string("/instances/") + INSTANCE_ID + "/attachments/dicom/info";
}


Json::Value MakeInfo(uint64_t compressedSize, uint64_t uncompressedSize, const char* uuid)
{
  Json::Value info;
  info["CompressedSize"] = Json::UInt64(compressedSize);
  info["UncompressedSize"] = Json::UInt64(uncompressedSize);
  info["Uuid"] = uuid;
  return info;
}


// A storage directory laid out as Orthanc's default storage, removed at the end of the test.
class StorageDirectoryTest : public ::testing::Test
{
protected:
  void SetUp() override
  {
    char pattern[] = "/tmp/azure-dicom-storage-XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(pattern));
    directory_ = pattern;
  }

  void TearDown() override
  {
    std::system(("rm -rf " + directory_).c_str());
  }

  void StoreFile(const std::string& content)
  {
    const std::string path = GetStoredPath();
    ASSERT_EQ(0, std::system(("mkdir -p " + path.substr(0, path.find_last_of('/'))).c_str()));
    std::ofstream(path, std::ios::binary) << content;
  }

  std::string GetStoredPath() const
  {
    const std::string uuid = ATTACHMENT_UUID;
    return directory_ + "/" + uuid.substr(0, 2) + "/" + uuid.substr(2, 2) + "/" + uuid;
  }

  std::string directory_;
};
}  // namespace


TEST_F(StorageDirectoryTest, LargeFileMappedFromStorage)
{
  const std::string content = MakeDicomLikeFile(LARGE_SIZE);
  StoreFile(content);
  TableGateway orthanc;
  orthanc.jsonAnswers[InfoUri()] = MakeInfo(LARGE_SIZE, LARGE_SIZE, ATTACHMENT_UUID);
  InstanceFileReader reader(orthanc);
  reader.SetStorageDirectory(directory_);

  EXPECT_TRUE(ReadAll(reader, LARGE_SIZE) == content);
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(InfoUri(), orthanc.requests[0]);
}


TEST_F(StorageDirectoryTest, SmallFileReadAfterLookup)
{
  StoreFile(MakeDicomLikeFile(1000));
  TableGateway orthanc;
  orthanc.jsonAnswers[InfoUri()] = MakeInfo(1000, 1000, ATTACHMENT_UUID);
  orthanc.answers[StoredUri()] = "the REST route was read";
  InstanceFileReader reader(orthanc);
  reader.SetStorageDirectory(directory_);

  EXPECT_EQ(MakeDicomLikeFile(1000), ReadAll(reader, 1000));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(InfoUri(), orthanc.requests[0]);
}


TEST_F(StorageDirectoryTest, ReplacedUuidLooksUpNewOne)
{
  const std::string content = MakeDicomLikeFile(1000);
  StoreFile(content);
  TableGateway orthanc;
  orthanc.jsonAnswers[InfoUri()] = MakeInfo(1000, 1000, ATTACHMENT_UUID);
  orthanc.jsonAnswers[InfoUri()]["UncompressedMD5"] = STORED_MD5;
  InstanceFileReader reader(orthanc);
  reader.SetStorageDirectory(directory_);

  // Orthanc stored the instance again (OverwriteInstances), under another attachment UUID. The
  // digest kept with the old UUID belongs to the old file, so the lookup's digest is returned.
  std::string storedMd5;
  const std::unique_ptr<IBuffer> file =
      reader.Read(INSTANCE_ID, 1000, "0badc0de-5d6e-4f70-8a9b-0c1d2e3f4a5b",
                  "ffffffffffffffffffffffffffffffff", &storedMd5);
  ASSERT_NE(nullptr, file);
  EXPECT_EQ(STORED_MD5, storedMd5);
  EXPECT_EQ(content, std::string(file->GetData(), file->GetSize()));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(InfoUri(), orthanc.requests[0]);
}


TEST_F(StorageDirectoryTest, UnusableStorageFallsBackToRest)
{
  const std::string content = MakeDicomLikeFile(LARGE_SIZE);
  struct Case
  {
    const char* name;
    Json::Value info;
    bool stored;
  };
  const Case cases[] = {
      {"compressed attachment", MakeInfo(LARGE_SIZE - 10, LARGE_SIZE, ATTACHMENT_UUID), true},
      {"no file in the directory", MakeInfo(LARGE_SIZE, LARGE_SIZE, ATTACHMENT_UUID), false},
      {"UUID with a path", MakeInfo(LARGE_SIZE, LARGE_SIZE, "../../../../../../etc/passwd"), true},
      {"no info", Json::Value(), true},
  };

  for (const Case& test : cases)
  {
    if (test.stored)
    {
      StoreFile(content);
    }
    else
    {
      std::system(("rm -rf " + directory_ + "/*").c_str());
    }
    TableGateway orthanc;
    if (!test.info.isNull())
    {
      orthanc.jsonAnswers[InfoUri()] = test.info;
    }
    orthanc.answers[StoredUri()] = content;
    InstanceFileReader reader(orthanc);
    reader.SetStorageDirectory(directory_);

    EXPECT_TRUE(ReadAll(reader, LARGE_SIZE) == content) << test.name;
    ASSERT_EQ(2u, orthanc.requests.size()) << test.name;
    EXPECT_EQ(StoredUri(), orthanc.requests[1]) << test.name;
  }
}


TEST_F(StorageDirectoryTest, ResizedStorageFileFallsBackToRest)
{
  StoreFile(MakeDicomLikeFile(LARGE_SIZE + 1));
  TableGateway orthanc;
  orthanc.jsonAnswers[InfoUri()] = MakeInfo(LARGE_SIZE, LARGE_SIZE, ATTACHMENT_UUID);
  orthanc.answers[StoredUri()] = MakeDicomLikeFile(LARGE_SIZE);
  InstanceFileReader reader(orthanc);
  reader.SetStorageDirectory(directory_);

  EXPECT_TRUE(ReadAll(reader, LARGE_SIZE) == MakeDicomLikeFile(LARGE_SIZE));
  EXPECT_EQ(2u, orthanc.requests.size());
}


TEST_F(StorageDirectoryTest, KnownUuidReadsWithoutRequest)
{
  TableGateway orthanc;
  InstanceFileReader reader(orthanc);
  reader.SetStorageDirectory(directory_);

  for (uint64_t size : {uint64_t{1000}, LARGE_SIZE})
  {
    const std::string expected = MakeDicomLikeFile(size);
    StoreFile(expected);
    std::string storedMd5;
    const std::unique_ptr<IBuffer> file =
        reader.Read(INSTANCE_ID, size, ATTACHMENT_UUID, STORED_MD5, &storedMd5);
    ASSERT_NE(nullptr, file) << size;
    EXPECT_EQ(STORED_MD5, storedMd5) << size;
    EXPECT_TRUE(std::string(file->GetData(), file->GetSize()) == expected) << size;
  }
  EXPECT_TRUE(orthanc.requests.empty());
}


TEST_F(StorageDirectoryTest, UnusableUuidFileReadsRest)
{
  const std::string content = MakeDicomLikeFile(1000);
  struct Case
  {
    const char* name;
    std::string stored;  // what the storage directory has under ATTACHMENT_UUID, "" for nothing
    const char* uuid;
  };
  const Case cases[] = {
      {"no file", "", ATTACHMENT_UUID},
      {"other size, as compressed", content.substr(0, 900), ATTACHMENT_UUID},
      {"same size, not DICOM", std::string(1000, 'x'), ATTACHMENT_UUID},
      {"UUID with a path", content, "../../../../../../etc/passwd"},
  };

  for (const Case& test : cases)
  {
    std::system(("rm -rf " + directory_ + "/*").c_str());
    if (!test.stored.empty())
    {
      StoreFile(test.stored);
    }
    TableGateway orthanc;
    orthanc.answers[StoredUri()] = content;
    InstanceFileReader reader(orthanc);
    reader.SetStorageDirectory(directory_);

    // The lookup finds no attachment information, so the REST route is read. The digest kept
    // with the UUID does not describe that file, so none is returned.
    std::string storedMd5 = "unset";
    const std::unique_ptr<IBuffer> file =
        reader.Read(INSTANCE_ID, 1000, test.uuid, STORED_MD5, &storedMd5);
    ASSERT_NE(nullptr, file) << test.name;
    EXPECT_EQ("", storedMd5) << test.name;
    EXPECT_EQ(content, std::string(file->GetData(), file->GetSize())) << test.name;
    ASSERT_EQ(2u, orthanc.requests.size()) << test.name;
    EXPECT_EQ(InfoUri(), orthanc.requests[0]) << test.name;
    EXPECT_EQ(StoredUri(), orthanc.requests[1]) << test.name;
  }
}


TEST_F(StorageDirectoryTest, RepeatedMissesStopStorageReads)
{
  const std::string content = MakeDicomLikeFile(1000);
  TableGateway orthanc;
  orthanc.answers[StoredUri()] = content;
  orthanc.jsonAnswers[InfoUri()] = MakeInfo(900, 1000, ATTACHMENT_UUID);
  InstanceFileReader reader(orthanc);
  reader.SetStorageDirectory(directory_);
  StoreFile(content.substr(0, 900));

  // Compressed storage: every file in the directory has another size than the instance.
  for (int i = 0; i < 25; i++)
  {
    ASSERT_NE(nullptr, reader.Read(INSTANCE_ID, 1000, ATTACHMENT_UUID));
  }
  EXPECT_FALSE(reader.ReadsStorageDirectory());

  // Then small files are read through Orthanc at once, with or without a UUID.
  orthanc.requests.clear();
  ASSERT_NE(nullptr, reader.Read(INSTANCE_ID, 1000));
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(StoredUri(), orthanc.requests[0]);

  // Without a storage directory, nothing is read from disk at all.
  InstanceFileReader withoutDirectory(orthanc);
  EXPECT_FALSE(withoutDirectory.ReadsStorageDirectory());
}


namespace
{
// An instance that Orthanc 1.10.1 stored, with the IDs that it returned for it.
const char PATIENT_ID[] = "BENCH000002";
const char STUDY_UID[] = "1.2.826.0.1.3680043.8.498.68359626404192280559343444268327633104";
const char SERIES_UID[] = "1.2.826.0.1.3680043.8.498.13199556301071465542534123114588730038";
const char SOP_UID[] = "1.2.826.0.1.3680043.8.498.13480717824940270957847191230155720119";
const char STORED_INSTANCE_ID[] = "f86ca4cb-e0497ef7-950bbb08-958c1a86-4be2f2ae";
const char STORED_STUDY_ID[] = "4afc09a4-9c8f65d3-0bec8baf-796839e5-422e5e7d";
const char STORED_SERIES_ID[] = "0a1b2c3d-4e5f6a7b-8c9d0e1f-2a3b4c5d-6e7f8a9b";


// The stored instance's file, with a private element of privateBytes before the Patient ID.
std::string MakeStoredFile(const std::string& sopUid, size_t privateBytes = 0)
{
  DicomFileBuilder builder("1.2.840.10008.1.2.1");
  builder.Add(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.2").Add(0x0008, 0x0018, "UI", sopUid);
  if (privateBytes > 0)
  {
    builder.Add(0x0009, 0x0010, "LO", "BENCH").Add(0x0009, 0x1001, "LO",
                                                   std::string(privateBytes, 'p'));
  }
  builder.Add(0x0010, 0x0020, "LO", PATIENT_ID)
      .Add(0x0020, 0x000D, "UI", STUDY_UID)
      .Add(0x0020, 0x000E, "UI", SERIES_UID);
  return builder.GetFile();
}


std::string StoredInfoUri()
{
  return std::string("/instances/") + STORED_INSTANCE_ID + "/attachments/dicom/info";
}


// Orthanc's index of the stored instance, for the resolver's GET /instances/{id}.
void AddIndexAnswers(TableGateway& orthanc, uint64_t size)
{
  Json::Value instance;
  instance["ID"] = STORED_INSTANCE_ID;
  instance["MainDicomTags"]["SOPInstanceUID"] = SOP_UID;
  instance["ParentSeries"] = STORED_SERIES_ID;
  instance["FileSize"] = Json::UInt64(size);
  instance["FileUuid"] = ATTACHMENT_UUID;
  orthanc.jsonAnswers[std::string("/instances/") + STORED_INSTANCE_ID] = instance;

  Json::Value series;
  series["MainDicomTags"]["SeriesInstanceUID"] = SERIES_UID;
  series["ParentStudy"] = STORED_STUDY_ID;
  orthanc.jsonAnswers[std::string("/series/") + STORED_SERIES_ID] = series;

  Json::Value study;
  study["MainDicomTags"]["StudyInstanceUID"] = STUDY_UID;
  orthanc.jsonAnswers[std::string("/studies/") + STORED_STUDY_ID] = study;
}


void ExpectStoredInstance(const NewInstance& instance, uint64_t size)
{
  EXPECT_EQ(STORED_INSTANCE_ID, instance.orthancId);
  EXPECT_EQ(SOP_UID, instance.sopInstanceUid);
  EXPECT_EQ(SERIES_UID, instance.seriesInstanceUid);
  EXPECT_EQ(STUDY_UID, instance.studyInstanceUid);
  EXPECT_EQ(STORED_STUDY_ID, instance.orthancStudyId);
  EXPECT_EQ(size, instance.size);
  EXPECT_EQ(ATTACHMENT_UUID, instance.fileUuid);
}


// Resolves the stored instance with a resolver that reads the storage directory, and checks it.
void ResolveStoredInstance(TableGateway& orthanc, const std::string& directory, uint64_t size)
{
  InstanceResolver resolver(orthanc);
  resolver.SetStorageDirectory(directory);
  NewInstance instance;
  ASSERT_TRUE(resolver.Resolve(instance, STORED_INSTANCE_ID));
  ExpectStoredInstance(instance, size);
}
}  // namespace


TEST_F(StorageDirectoryTest, ResolverReadsIdentifiersFromFile)
{
  const std::string file = MakeStoredFile(SOP_UID);
  StoreFile(file);
  TableGateway orthanc;
  orthanc.jsonAnswers[StoredInfoUri()] = MakeInfo(file.size(), file.size(), ATTACHMENT_UUID);
  ResolveStoredInstance(orthanc, directory_, file.size());
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(StoredInfoUri(), orthanc.requests[0]);
}


TEST_F(StorageDirectoryTest, ResolverKeepsOrthancDigest)
{
  const std::string file = MakeStoredFile(SOP_UID);
  StoreFile(file);
  for (const char* md5 : {"dd81bde8bbef13a03385f15f496537bb", "DD81BDE8", ""})
  {
    TableGateway orthanc;
    Json::Value info = MakeInfo(file.size(), file.size(), ATTACHMENT_UUID);
    if (*md5 != '\0')
    {
      info["UncompressedMD5"] = md5;
    }
    orthanc.jsonAnswers[StoredInfoUri()] = info;
    InstanceResolver resolver(orthanc);
    resolver.SetStorageDirectory(directory_);
    NewInstance instance;
    ASSERT_TRUE(resolver.Resolve(instance, STORED_INSTANCE_ID));
    // Only a digest as Orthanc writes it (32 lower-case hexadecimal digits) is kept.
    EXPECT_EQ(std::string(md5).size() == 32 ? md5 : "", instance.fileMd5) << md5;
  }
}


TEST_F(StorageDirectoryTest, ResolverReadsFurtherAfterLargeElement)
{
  // The identifiers end after the first 16 KB, so a second, longer read finds them.
  const std::string file = MakeStoredFile(SOP_UID, 20000) + std::string(100000, 'x');
  StoreFile(file);
  TableGateway orthanc;
  orthanc.jsonAnswers[StoredInfoUri()] = MakeInfo(file.size(), file.size(), ATTACHMENT_UUID);
  ResolveStoredInstance(orthanc, directory_, file.size());
  EXPECT_EQ(1u, orthanc.requests.size());
}


TEST_F(StorageDirectoryTest, ResolverUsesIndexWhenFileIsAnotherInstance)
{
  // The file's identifiers give another Orthanc ID, so they are not the index's.
  const std::string file = MakeStoredFile("1.2.3.4");
  StoreFile(file);
  TableGateway orthanc;
  orthanc.jsonAnswers[StoredInfoUri()] = MakeInfo(file.size(), file.size(), ATTACHMENT_UUID);
  AddIndexAnswers(orthanc, file.size());
  ResolveStoredInstance(orthanc, directory_, file.size());
  EXPECT_EQ((std::vector<std::string>{StoredInfoUri(),
                                      std::string("/instances/") + STORED_INSTANCE_ID,
                                      std::string("/series/") + STORED_SERIES_ID,
                                      std::string("/studies/") + STORED_STUDY_ID}),
            orthanc.requests);
}


TEST_F(StorageDirectoryTest, ResolverUsesIndexForCompressedAttachment)
{
  const std::string file = MakeStoredFile(SOP_UID);
  StoreFile(file);
  TableGateway orthanc;
  orthanc.jsonAnswers[StoredInfoUri()] = MakeInfo(file.size() - 100, file.size(), ATTACHMENT_UUID);
  AddIndexAnswers(orthanc, file.size());
  ResolveStoredInstance(orthanc, directory_, file.size());
  EXPECT_EQ(4u, orthanc.requests.size());
}


TEST_F(StorageDirectoryTest, ResolverStopsReadingFilesAfterMisses)
{
  TableGateway orthanc;  // returns the index, but the storage directory has no file
  AddIndexAnswers(orthanc, 1000);
  orthanc.jsonAnswers[StoredInfoUri()] = MakeInfo(1000, 1000, ATTACHMENT_UUID);
  InstanceResolver resolver(orthanc);
  resolver.SetStorageDirectory(directory_);

  NewInstance instance;
  for (int i = 0; i < 20; i++)
  {
    ASSERT_TRUE(resolver.ReadsFiles()) << i;
    ASSERT_TRUE(resolver.Resolve(instance, STORED_INSTANCE_ID));
    ExpectStoredInstance(instance, 1000);
  }
  EXPECT_FALSE(resolver.ReadsFiles());

  orthanc.requests.clear();
  ASSERT_TRUE(resolver.Resolve(instance, STORED_INSTANCE_ID));
  ASSERT_FALSE(orthanc.requests.empty());
  EXPECT_EQ(std::string("/instances/") + STORED_INSTANCE_ID, orthanc.requests[0]);
}


TEST_F(StorageDirectoryTest, ResolverDoesNotCountDeletedInstances)
{
  TableGateway orthanc;  // has no instance
  InstanceResolver resolver(orthanc);
  resolver.SetStorageDirectory(directory_);

  NewInstance instance;
  for (int i = 0; i < 30; i++)
  {
    EXPECT_FALSE(resolver.Resolve(instance, STORED_INSTANCE_ID));
  }
  EXPECT_TRUE(resolver.ReadsFiles());
}


TEST(InstanceResolver, WithoutStorageDirectoryReadsIndex)
{
  TableGateway orthanc;
  AddIndexAnswers(orthanc, 1000);
  InstanceResolver resolver(orthanc);
  EXPECT_FALSE(resolver.ReadsFiles());

  NewInstance instance;
  ASSERT_TRUE(resolver.Resolve(instance, STORED_INSTANCE_ID));
  ExpectStoredInstance(instance, 1000);
  EXPECT_EQ(std::string("/instances/") + STORED_INSTANCE_ID, orthanc.requests[0]);
}


namespace
{
// Writes the file to disk and drops it from the page cache. Returns whether none of it is
// cached afterwards.
bool EvictFromPageCache(const std::string& path)
{
  const int descriptor = open(path.c_str(), O_RDONLY);
  if (descriptor < 0)
  {
    return false;
  }
  struct stat status = {};
  fstat(descriptor, &status);
  fdatasync(descriptor);
  posix_fadvise(descriptor, 0, 0, POSIX_FADV_DONTNEED);

  const size_t size = static_cast<size_t>(status.st_size);
  void* address = mmap(nullptr, size, PROT_READ, MAP_SHARED, descriptor, 0);
  close(descriptor);
  if (address == MAP_FAILED)
  {
    return false;
  }
  const long pageSize = sysconf(_SC_PAGESIZE);
  std::vector<unsigned char> resident((size + pageSize - 1) / pageSize);
  const bool checked = mincore(address, size, resident.data()) == 0;
  munmap(address, size);
  return checked && std::all_of(resident.begin(), resident.end(),
                                [](unsigned char page) { return (page & 1) == 0; });
}
}  // namespace


TEST_F(StorageDirectoryTest, ResolverReadsOnlyCachedFiles)
{
  const std::string file = MakeStoredFile(SOP_UID) + std::string(50000, 'x');
  StoreFile(file);
  ASSERT_TRUE(EvictFromPageCache(GetStoredPath()));
  TableGateway orthanc;
  orthanc.jsonAnswers[StoredInfoUri()] = MakeInfo(file.size(), file.size(), ATTACHMENT_UUID);
  AddIndexAnswers(orthanc, file.size());

  // The file is on disk only, so Orthanc's index gives the UIDs.
  ResolveStoredInstance(orthanc, directory_, file.size());
  EXPECT_EQ(4u, orthanc.requests.size());

  // Read once, the file is in the page cache, and its first bytes give the UIDs.
  std::string content;
  std::getline(std::ifstream(GetStoredPath(), std::ios::binary), content, '\0');
  orthanc.requests.clear();
  ResolveStoredInstance(orthanc, directory_, file.size());
  ASSERT_EQ(1u, orthanc.requests.size());
  EXPECT_EQ(StoredInfoUri(), orthanc.requests[0]);
}
